"""A live_call AI service written the way Python AI services are: grpcio's asyncio server.

It echoes every play_audio chunk back as audio_output, and sends nothing (not even its
response headers, which grpcio sends only with the first message) until the first chunk
arrives. Started by the test suite with the stubs it generates from proto/live_call.proto.

Usage: python grpcio_echo.py STUBS_DIR  (prints "PORT <n>" once listening on 127.0.0.1)
"""

import asyncio
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
import live_call_pb2 as pb  # noqa: E402
import live_call_pb2_grpc as pb_grpc  # noqa: E402


class Echo(pb_grpc.LiveCallServicer):
    async def StreamCall(self, request_iterator, context):
        async for request in request_iterator:
            kind = request.WhichOneof("data")
            if kind == "play_audio":
                chunk = request.play_audio
                yield pb.ServerResponse(
                    status=True,
                    audio_output=pb.ServerAudioChunk(
                        sample_rate=chunk.sample_rate,
                        sample_width=chunk.sample_width,
                        num_channels=chunk.num_channels,
                        duration=chunk.duration,
                        audio_content=chunk.audio_content,
                    ),
                )
            elif kind == "disconnect":
                return

    async def Check(self, request, context):
        return pb.HealthCheckResponse(status=pb.HealthCheckResponse.SERVING)


async def main():
    server = grpc.aio.server()
    pb_grpc.add_LiveCallServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"PORT {port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
