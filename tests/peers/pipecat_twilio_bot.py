"""A Pipecat bot behind Twilio Media Streams, built the way Pipecat's telephony examples are:
a FastAPI WebSocket endpoint that reads the `connected` and `start` messages with
`parse_telephony_websocket`, then runs `transport.input() -> processor -> transport.output()`
with `TwilioFrameSerializer`. Pipecat itself is used unmodified, as installed from PyPI.

What the processor does depends on the `mode` custom parameter of `start`:
- `echo` (default): every caller audio frame goes back as bot audio;
- `interrupt`: plays six seconds of a 700 Hz tone, then interrupts itself (Pipecat sends
  `clear`) after one and a half seconds;
- `close`: ends the pipeline after a second, which closes the socket.
In every mode a DTMF key is answered with half a second of 1200 Hz.

Prints `PORT n` once listening, then one line per event (`START`, `DTMF`, `INTERRUPTED`,
`ENDING`, `DISCONNECTED`) for the tests to read.
"""

import asyncio
import json
import math
import socket
import struct
import sys

import uvicorn
from fastapi import FastAPI, WebSocket

from pipecat.frames.frames import (
    EndFrame,
    InputAudioRawFrame,
    InputDTMFFrame,
    OutputAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)

try:
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker as Task
    from pipecat.workers.runner import WorkerRunner as Runner
except ImportError:  # Pipecat before 1.3
    from pipecat.pipeline.task import PipelineParams, PipelineTask as Task
    from pipecat.pipeline.runner import PipelineRunner as Runner

RATE = 8000


def say(line):
    print(line, flush=True)


def tone(freq, ms, amplitude=8000):
    n = RATE * ms // 1000
    return b"".join(
        struct.pack("<h", int(amplitude * math.sin(2 * math.pi * freq * i / RATE)))
        for i in range(n)
    )


class Bot(FrameProcessor):
    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    async def process_frame(self, frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            if self.mode == "echo":
                await self.push_frame(
                    OutputAudioRawFrame(
                        audio=frame.audio,
                        sample_rate=frame.sample_rate,
                        num_channels=frame.num_channels,
                    )
                )
        elif isinstance(frame, InputDTMFFrame):
            say(f"DTMF {frame.button.value}")
            await self.push_frame(
                OutputAudioRawFrame(audio=tone(1200, 500), sample_rate=RATE, num_channels=1)
            )
        else:
            await self.push_frame(frame, direction)


app = FastAPI()


@app.websocket("/ws")
async def stream(websocket: WebSocket):
    await websocket.accept()
    transport_type, call_data = await parse_telephony_websocket(websocket)
    if transport_type != "twilio":
        say(f"NOT-TWILIO {transport_type}")
        await websocket.close()
        return
    stream_sid = call_data["stream_id"]
    call_sid = call_data["call_id"]
    body = call_data["body"] or {}
    say(f"START {call_sid} {json.dumps(body, sort_keys=True)}")
    serializer = TwilioFrameSerializer(
        stream_sid,
        call_sid,
        params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
    )
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
            serializer=serializer,
        ),
    )
    bot = Bot(body.get("mode", "echo"))
    pipeline = Pipeline([transport.input(), bot, transport.output()])
    task = Task(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
        idle_timeout_secs=None,
    )

    async def act():
        await asyncio.sleep(1.0)
        if bot.mode == "interrupt":
            chunk = tone(700, 20)
            await task.queue_frames(
                [
                    OutputAudioRawFrame(audio=chunk, sample_rate=RATE, num_channels=1)
                    for _ in range(300)
                ]
            )
            await asyncio.sleep(1.5)
            say(f"INTERRUPTED {call_sid}")
            await bot.broadcast_interruption()
        elif bot.mode == "close":
            say(f"ENDING {call_sid}")
            await task.queue_frame(EndFrame())

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport, client):
        asyncio.create_task(act())

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client):
        say(f"DISCONNECTED {call_sid}")
        await task.cancel()

    runner = Runner(handle_sigint=False)
    if hasattr(runner, "add_workers"):
        await runner.add_workers(task)
        await runner.run()
    else:
        await runner.run(task)


async def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    say(f"PORT {port}")
    await server.serve(sockets=[sock])


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
