// The softphone page: one call at a time over the live-call WebSocket.
//
// Call: subscribe to `/events` (so the call's first event is not missed), check the live-call
// token with a plain GET of the WebSocket URL (a browser WebSocket cannot read a 401), open
// the socket, send `initial_info`, then the microphone as 20 ms `play_audio` chunks of 16 kHz
// s16le. Bot audio (`audio_output`, 8 kHz s16le) is queued on a Web Audio clock;
// `signal.kill_audio` drops what is queued; `signal.end_call` ends the call. Hang up sends
// `disconnect`. Keys and tokens the switch asks for (401) are kept in sessionStorage.
"use strict";

const IN_RATE = 16000; // what the worklet sends
const OUT_RATE = 8000; // what the switch sends
const TRANSCRIPT_REFRESH_MS = 1000;
const STORE_API_KEY = "switchboard.apiKey";
const STORE_TOKEN = "switchboard.liveCallToken";

const $ = (id) => document.getElementById(id);

/** One call's state; `null` between calls. */
let call = null;

function setState(state, text) {
  document.body.dataset.state = state;
  if (text) {
    $("status").textContent = text;
  }
  const busy = state === "connecting" || state === "live";
  $("call").disabled = busy;
  $("hangup").disabled = !busy;
}

// ---- keys and tokens ----

let pendingCredentials = null;

/** Asks the person for a key; resolves with it, or null when they cancel. */
function askFor(what, why) {
  const form = $("credentials");
  $("credentials-title").textContent = what === "api" ? "API key needed" : "Live-call token needed";
  $("credentials-label").textContent = what === "api" ? "API key" : "Live-call token";
  $("credentials-why").textContent = why;
  $("credentials-value").value = "";
  form.hidden = false;
  $("credentials-value").focus();
  return new Promise((resolve) => {
    pendingCredentials = resolve;
  });
}

function closeCredentials(value) {
  $("credentials").hidden = true;
  const resolve = pendingCredentials;
  pendingCredentials = null;
  if (resolve) {
    resolve(value);
  }
}

function apiHeaders() {
  const key = sessionStorage.getItem(STORE_API_KEY);
  return key ? { Authorization: "Bearer " + key } : {};
}

/** GET with the API key; asks for a key on 401 and tries again. Null when the person cancels. */
async function apiFetch(path, init) {
  for (;;) {
    const response = await fetch(path, Object.assign({ headers: apiHeaders() }, init || {}));
    if (response.status !== 401) {
      return response;
    }
    const key = await askFor("api", "The switch answered 401 to " + path + ": it needs one of its [auth] api_keys.");
    if (!key) {
      return null;
    }
    sessionStorage.setItem(STORE_API_KEY, key);
  }
}

// ---- events (Server-Sent Events read with fetch, so the API key can be sent) ----

async function followEvents(current) {
  const response = await apiFetch("/events", { signal: current.abort.signal });
  if (!response || !response.ok) {
    throw new Error("events: " + (response ? "HTTP " + response.status : "no API key"));
  }
  // Read in the background; the caller goes on once the subscription stands.
  (async () => {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        return;
      }
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) {
            name = line.slice(6).trim();
          } else if (line.startsWith("data:")) {
            data += line.slice(5).trim();
          }
        }
        if (data) {
          onEvent(current, name, data);
        }
      }
    }
  })().catch(() => {});
}

function onEvent(current, name, data) {
  let record;
  try {
    record = JSON.parse(data);
  } catch (e) {
    return;
  }
  if (record.reference !== current.reference) {
    return;
  }
  if (!current.id) {
    current.id = record.id;
    $("call-id").textContent = record.id;
    refreshTranscript(current);
  }
  const item = document.createElement("li");
  const time = new Date().toLocaleTimeString();
  item.textContent = time + " " + name + " (" + record.status + (record.hangup_reason ? ", " + record.hangup_reason : "") + ")";
  item.dataset.event = name;
  $("events").appendChild(item);
  refreshTranscript(current);
  if (name === "call_hangup") {
    finish(current, "The call has ended (" + (record.hangup_by || "?") + ", " + (record.hangup_reason || "?") + ").");
  }
}

// ---- transcript ----

async function refreshTranscript(current) {
  if (!current.id || current.transcriptBusy) {
    return;
  }
  current.transcriptBusy = true;
  try {
    const response = await apiFetch("/api/v1/calls/" + encodeURIComponent(current.id) + "/transcript");
    if (response && response.ok) {
      const view = await response.json();
      const list = $("transcript");
      list.replaceChildren();
      for (const entry of view.entries || []) {
        const item = document.createElement("li");
        const who = document.createElement("span");
        who.className = "who";
        who.textContent = entry.type === "text_bot" ? "Bot: " : "You: ";
        item.append(who, document.createTextNode(entry.text));
        list.appendChild(item);
      }
    }
  } catch (e) {
    // The next refresh tries again.
  } finally {
    current.transcriptBusy = false;
  }
}

// ---- audio ----

function toBase64(bytes) {
  let text = "";
  const STEP = 0x8000;
  for (let i = 0; i < bytes.length; i += STEP) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + STEP));
  }
  return btoa(text);
}

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    bytes[i] = raw.charCodeAt(i);
  }
  return bytes;
}

async function startMicrophone(current) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  });
  current.stream = stream;
  const context = new AudioContext();
  current.context = context;
  await context.audioWorklet.addModule("/phone/capture-worklet.js");
  const source = context.createMediaStreamSource(stream);
  const capture = new AudioWorkletNode(context, "capture-16k", { numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: "explicit" });
  // The worklet runs only while its output leads somewhere; a silent gain keeps it running.
  const mute = context.createGain();
  mute.gain.value = 0;
  source.connect(capture).connect(mute).connect(context.destination);
  capture.port.onmessage = (message) => {
    if (!current.ws || current.ws.readyState !== WebSocket.OPEN || !current.greeted) {
      return;
    }
    // Int16Array is little-endian on every platform browsers run on.
    const bytes = new Uint8Array(message.data);
    current.ws.send(JSON.stringify({
      play_audio: {
        sample_rate: IN_RATE,
        sample_width: 16,
        num_channels: 1,
        duration: 0.02,
        audio_content: toBase64(bytes),
      },
    }));
    current.sent += 1;
    $("frames-sent").textContent = String(current.sent);
  };
  await context.resume();
}

function play(current, base64) {
  const context = current.context;
  if (!context) {
    return;
  }
  const bytes = fromBase64(base64);
  const samples = new Int16Array(bytes.buffer, 0, bytes.length >> 1);
  if (samples.length === 0) {
    return;
  }
  const buffer = context.createBuffer(1, samples.length, OUT_RATE);
  const channel = buffer.getChannelData(0);
  for (let i = 0; i < samples.length; i++) {
    channel[i] = samples[i] / 0x8000;
  }
  const node = context.createBufferSource();
  node.buffer = buffer;
  node.connect(context.destination);
  const at = Math.max(context.currentTime + 0.05, current.playAt);
  node.start(at);
  current.playAt = at + buffer.duration;
  current.playing.add(node);
  node.onended = () => current.playing.delete(node);
  current.heard += 1;
  $("frames-heard").textContent = String(current.heard);
}

function killAudio(current) {
  for (const node of current.playing) {
    try {
      node.stop();
    } catch (e) {
      // Already stopped.
    }
  }
  current.playing.clear();
  current.playAt = 0;
}

// ---- the call ----

function socketUrl(current, token) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const path = "/live-call/websocket/" + encodeURIComponent(current.reference) + "/" + encodeURIComponent(current.number);
  return { ws: scheme + "//" + location.host + path + (token ? "?token=" + encodeURIComponent(token) : ""), http: path + (token ? "?token=" + encodeURIComponent(token) : "") };
}

/** The live-call token the switch accepts (none when it needs none); null when the person cancels. */
async function liveCallToken(current) {
  for (;;) {
    const token = sessionStorage.getItem(STORE_TOKEN) || "";
    // Not an upgrade: the switch checks the token first and answers 401 or 403 for a bad one,
    // 503 when it admits no calls, and 400 (not a WebSocket request) when all is well.
    const probe = await fetch(socketUrl(current, token).http, { signal: current.abort.signal });
    if (probe.status === 401) {
      const entered = await askFor("token", "The switch answered 401 to the live-call WebSocket: it needs one of its [auth] live_call_tokens.");
      if (!entered) {
        return null;
      }
      sessionStorage.setItem(STORE_TOKEN, entered);
      continue;
    }
    if (probe.status === 403 || probe.status === 503) {
      let message = "HTTP " + probe.status;
      try {
        message = (await probe.json()).error.message;
      } catch (e) {
        // Keep the status.
      }
      throw new Error(message);
    }
    return token;
  }
}

async function startCall() {
  if (call) {
    return;
  }
  const current = {
    reference: "phone-" + crypto.randomUUID(),
    number: $("number").value.trim() || "+10000000000",
    hotline: $("hotline").value.trim(),
    workspace: $("workspace").value.trim(),
    abort: new AbortController(),
    id: null,
    ws: null,
    greeted: false,
    sent: 0,
    heard: 0,
    playAt: 0,
    playing: new Set(),
    ended: false,
  };
  call = current;
  $("events").replaceChildren();
  $("transcript").replaceChildren();
  $("call-id").textContent = "none";
  $("frames-sent").textContent = "0";
  $("frames-heard").textContent = "0";
  setState("connecting", "Connecting…");
  try {
    await startMicrophone(current);
    await followEvents(current);
    const token = await liveCallToken(current);
    if (token === null) {
      finish(current, "Not called: no live-call token.");
      return;
    }
    openSocket(current, token);
  } catch (e) {
    finish(current, "Call failed: " + (e && e.message ? e.message : e));
  }
}

function openSocket(current, token) {
  const ws = new WebSocket(socketUrl(current, token).ws);
  current.ws = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({
      initial_info: {
        workspace_id: current.workspace,
        call_id: current.reference,
        customer_phone_number: current.number,
        type_call: "inbound",
        hotline: current.hotline,
        url_audio_file: "",
      },
    }));
    current.greeted = true;
    current.refresh = setInterval(() => refreshTranscript(current), TRANSCRIPT_REFRESH_MS);
    setState("live", "In call. Talk to the bot.");
  };
  ws.onmessage = (message) => {
    let frame;
    try {
      frame = JSON.parse(message.data);
    } catch (e) {
      return;
    }
    if (frame.audio_output) {
      play(current, frame.audio_output.audio_content || "");
    } else if (frame.signal && frame.signal.kill_audio) {
      killAudio(current);
    } else if (frame.signal && frame.signal.end_call) {
      finish(current, "The bot ended the call.");
    } else if (frame.signal && frame.signal.transfer_call) {
      const staff = (frame.signal.transfer_call.target_staff || []).map((s) => s.name + " " + s.phone_number).join(", ");
      $("status").textContent = "The bot transfers the call to " + (staff || "someone") + "; a browser caller cannot follow, hang up when done.";
    } else if (frame.error) {
      $("status").textContent = "The switch said: " + frame.error.message;
    }
  };
  ws.onclose = (event) => {
    if (!current.ended) {
      finish(current, "The call has ended (WebSocket closed, code " + event.code + ").");
    }
  };
}

function hangUp() {
  const current = call;
  if (!current) {
    return;
  }
  if (current.ws && current.ws.readyState === WebSocket.OPEN) {
    current.ws.send(JSON.stringify({ disconnect: {} }));
  }
  finish(current, "You hung up.");
}

/** Stops the microphone, playback and the socket; events and transcript get a last look. */
function finish(current, text) {
  if (current.ended) {
    return;
  }
  current.ended = true;
  if (current.refresh) {
    clearInterval(current.refresh);
  }
  killAudio(current);
  if (current.ws && current.ws.readyState <= WebSocket.OPEN) {
    current.ws.close(1000);
  }
  if (current.stream) {
    current.stream.getTracks().forEach((t) => t.stop());
  }
  if (current.context) {
    current.context.close().catch(() => {});
    current.context = null;
  }
  if (call === current) {
    call = null;
  }
  setState("ended", text);
  // The hang-up's own event and the last transcript lines arrive just after.
  setTimeout(() => {
    current.abort.abort();
    refreshTranscript(current);
  }, 3000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("call").addEventListener("click", startCall);
  $("hangup").addEventListener("click", hangUp);
  $("credentials").addEventListener("submit", (event) => {
    event.preventDefault();
    closeCredentials($("credentials-value").value.trim() || null);
  });
  $("credentials-cancel").addEventListener("click", () => closeCredentials(null));
  setState("idle");
});
