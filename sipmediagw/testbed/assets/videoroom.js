// sipmediagw test-bed room page logic (Janus 1.1 janus.js, VideoRoom plugin, multistream subscribers).
// window.sipmediagw exposes state and the measurements the test participants read through Selenium.
"use strict";

(function () {
  const params = new URLSearchParams(window.location.search);
  const room = parseInt(params.get("room") || "1234", 10);
  const state = { status: "idle", joined: false, publishing: false, feeds: {}, error: null, myId: null };
  let janus = null;
  let publisher = null;
  const subscribers = {};            // feed id -> plugin handle
  const remoteStreams = {};          // feed id -> MediaStream
  let audioCtx = null;

  // The test tone must reach the room as sent: WebRTC's echo canceller, noise suppressor and AGC treat a steady
  // synthetic sine as noise and fade it 40-60 dB within seconds (FIELD-NOTES). A person's voice is not a sine.
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = function (constraints) {
      const c = Object.assign({}, constraints || {});
      if (c.audio) {
        c.audio = Object.assign({}, typeof c.audio === "object" ? c.audio : {},
                                { echoCancellation: false, noiseSuppression: false, autoGainControl: false });
      }
      return original(c);
    };
  }

  function setStatus(s) { state.status = s; const el = document.getElementById("status"); if (el) el.textContent = s; }
  function fail(msg) { state.error = String(msg); setStatus("error: " + msg); }

  function start(name) {
    if (janus) return;
    setStatus("connecting");
    Janus.init({ debug: false, callback: function () {
      janus = new Janus({
        server: server, iceServers: iceServers, token: token || undefined, apisecret: apisecret || undefined,
        success: function () { attachPublisher(name); },
        error: fail,
        destroyed: function () { setStatus("left"); }
      });
    }});
  }

  function attachPublisher(name) {
    janus.attach({
      plugin: "janus.plugin.videoroom",
      success: function (handle) {
        publisher = handle;
        handle.send({ message: { request: "join", room: room, ptype: "publisher", display: name } });
      },
      error: fail,
      onmessage: function (msg, jsep) {
        const ev = msg["videoroom"];
        if (ev === "joined") {
          state.joined = true; state.myId = msg["id"]; setStatus("joined");
          document.getElementById("leave").disabled = false;
          publish();
        }
        if (msg["error"]) fail(msg["error"]);
        (msg["publishers"] || []).forEach(function (p) { subscribe(p.id, p.display, p.streams); });
        const gone = msg["leaving"] || msg["unpublished"];
        if (gone && gone !== "ok") dropFeed(gone);
        if (jsep) publisher.handleRemoteJsep({ jsep: jsep });
      },
      onlocaltrack: function (track, on) {
        if (!on) return;
        const video = document.getElementById("local");
        const stream = video.srcObject || new MediaStream();
        stream.addTrack(track);
        video.srcObject = stream;
      },
      webrtcState: function (up) { state.publishing = up; },
      onremotetrack: function () {}
    });
  }

  // Publish the microphone, and the camera when there is one (a phone-like participant, e.g. an audio-only
  // gateway, has none: asking for it would fail the whole offer with NotFoundError).
  function publish() {
    navigator.mediaDevices.enumerateDevices().then(function (devices) {
      const camera = devices.some(function (d) { return d.kind === "videoinput"; });
      const tracks = [{ type: "audio", capture: true, recv: false }];
      if (camera) tracks.push({ type: "video", capture: true, recv: false });
      publisher.createOffer({
        tracks: tracks,
        success: function (jsep) {
          publisher.send({ message: { request: "configure", audio: true, video: camera }, jsep: jsep });
        },
        error: fail
      });
    }, fail);
  }

  // ?audio=only (an audio-only gateway): subscribe to each publisher's audio alone, so no video is received,
  // decoded or drawn for a caller who gets none.
  const audioOnly = params.get("audio") === "only";

  function subscribe(feed, display, streams) {
    if (subscribers[feed]) return;
    let wanted = [{ feed: feed }];
    if (audioOnly) {
      wanted = (streams || []).filter(function (s) { return s.type === "audio" && !s.disabled; })
        .map(function (s) { return { feed: feed, mid: s.mid }; });
      if (!wanted.length) return;  // nothing to hear from this publisher
    }
    state.feeds[feed] = { display: display, up: false };
    janus.attach({
      plugin: "janus.plugin.videoroom",
      success: function (handle) {
        subscribers[feed] = handle;
        handle.send({ message: { request: "join", room: room, ptype: "subscriber", streams: wanted,
                                 private_id: undefined } });
      },
      error: fail,
      onmessage: function (msg, jsep) {
        if (msg["error"]) fail(msg["error"]);
        if (jsep) {
          const handle = subscribers[feed];
          handle.createAnswer({
            jsep: jsep, tracks: [{ type: "data" }],
            success: function (answer) { handle.send({ message: { request: "start", room: room }, jsep: answer }); },
            error: fail
          });
        }
      },
      webrtcState: function (up) { if (state.feeds[feed]) state.feeds[feed].up = up; },
      onremotetrack: function (track, mid, on) {
        if (!on) return;
        let stream = remoteStreams[feed];
        if (!stream) {
          stream = remoteStreams[feed] = new MediaStream();
          const video = document.createElement("video");
          video.id = "remote-" + feed; video.autoplay = true; video.playsInline = true;
          document.getElementById("videos").appendChild(video);
          video.srcObject = stream;
        }
        stream.addTrack(track);
      }
    });
  }

  function dropFeed(feed) {
    const handle = subscribers[feed];
    if (handle) handle.detach();
    delete subscribers[feed]; delete remoteStreams[feed]; delete state.feeds[feed];
    const video = document.getElementById("remote-" + feed);
    if (video) video.remove();
  }

  function leave(done) {
    // Destroying the session (not just closing the tab) removes us at once: no ghost publisher for 60 s.
    if (!janus) { if (done) done(); return; }
    if (publisher) publisher.send({ message: { request: "leave" } });
    const j = janus; janus = null;
    j.destroy({ cleanupHandles: true, notifyDestroyed: true,
                success: function () { setStatus("left"); if (done) done(); },
                error: function () { setStatus("left"); if (done) done(); } });
    state.joined = false;
  }

  // The loudest frequency (Hz) the analyser hears now, or null when nothing is above -70 dBFS.
  function loudestFrequency(analyser, bins) {
    analyser.getFloatFrequencyData(bins);
    let best = -1, bestDb = -Infinity;
    for (let i = 2; i < bins.length; i++) if (bins[i] > bestDb) { bestDb = bins[i]; best = i; }
    return best > 0 && bestDb > -70 ? best * audioCtx.sampleRate / analyser.fftSize : null;
  }

  // Dominant frequency (Hz) of all remote audio, from a WebAudio analyser; resolves null when nothing is heard.
  function remoteAudioFrequency(ms) {
    const tracks = [];
    Object.values(remoteStreams).forEach(function (s) { s.getAudioTracks().forEach(function (t) { tracks.push(t); }); });
    if (!tracks.length) return Promise.resolve(null);
    audioCtx = audioCtx || new AudioContext();
    const analyser = audioCtx.createAnalyser();
    analyser.fftSize = 8192;
    analyser.smoothingTimeConstant = 0;
    const sources = tracks.map(function (t) {
      const src = audioCtx.createMediaStreamSource(new MediaStream([t])); src.connect(analyser); return src;
    });
    const bins = new Float32Array(analyser.frequencyBinCount);
    const votes = {};
    return audioCtx.resume().then(function () {
      return new Promise(function (resolve) {
        const timer = setInterval(function () {
          const heard = loudestFrequency(analyser, bins);
          if (heard !== null) {
            const hz = Math.round(heard);
            votes[hz] = (votes[hz] || 0) + 1;
          }
        }, 50);
        setTimeout(function () {
          clearInterval(timer);
          sources.forEach(function (s) { s.disconnect(); });
          let hz = null, n = 0;
          Object.keys(votes).forEach(function (k) { if (votes[k] > n) { n = votes[k]; hz = Number(k); } });
          resolve(hz);
        }, ms);
      });
    });
  }

  // Resolves the dominant frequency (Hz) as soon as remote audio within `tolerance` Hz of `hz` is heard (two
  // analyses 20 ms apart agree), or null after `ms`. Unlike remoteAudioFrequency, nothing is averaged over a window:
  // the bench times when the caller becomes audible with it, to within the 85 ms analysis window. Remote tracks that
  // appear meanwhile are listened to as well.
  function toneHeard(hz, tolerance, ms) {
    audioCtx = audioCtx || new AudioContext();
    const analyser = audioCtx.createAnalyser();
    analyser.fftSize = 4096;  // 85 ms at 48 kHz, 11.7 Hz per bin
    analyser.smoothingTimeConstant = 0;
    const bins = new Float32Array(analyser.frequencyBinCount);
    const listened = new Map();
    function listenToNewTracks() {
      Object.values(remoteStreams).forEach(function (s) {
        s.getAudioTracks().forEach(function (t) {
          if (listened.has(t)) return;
          const src = audioCtx.createMediaStreamSource(new MediaStream([t])); src.connect(analyser);
          listened.set(t, src);
        });
      });
    }
    return audioCtx.resume().then(function () {
      return new Promise(function (resolve) {
        let hits = 0;
        function finish(result) {
          clearInterval(timer); clearTimeout(limit);
          listened.forEach(function (src) { src.disconnect(); });
          resolve(result);
        }
        const timer = setInterval(function () {
          listenToNewTracks();
          const heard = loudestFrequency(analyser, bins);
          hits = heard !== null && Math.abs(heard - hz) <= tolerance ? hits + 1 : 0;
          if (hits >= 2) finish(Math.round(heard));
        }, 20);
        const limit = setTimeout(function () { finish(null); }, ms);
      });
    });
  }

  // Record `ms` of all remote audio as the page hears it: resolves {rate, pcm} with pcm the base64 of 16-bit
  // little-endian mono samples (null when no remote audio track exists). The analysis is done in Python.
  function recordRemoteAudio(ms) {
    const tracks = [];
    Object.values(remoteStreams).forEach(function (s) { s.getAudioTracks().forEach(function (t) { tracks.push(t); }); });
    if (!tracks.length) return Promise.resolve(null);
    audioCtx = audioCtx || new AudioContext();
    const mix = audioCtx.createGain();
    const sources = tracks.map(function (t) {
      const src = audioCtx.createMediaStreamSource(new MediaStream([t])); src.connect(mix); return src;
    });
    const recorder = audioCtx.createScriptProcessor(4096, 1, 1);
    const silent = audioCtx.createGain();
    silent.gain.value = 0;  // a ScriptProcessor only runs when connected to the destination; keep it inaudible
    mix.connect(recorder); recorder.connect(silent); silent.connect(audioCtx.destination);
    const chunks = [];
    let total = 0;
    const wanted = Math.round(audioCtx.sampleRate * ms / 1000);
    return audioCtx.resume().then(function () {
      return new Promise(function (resolve) {
        recorder.onaudioprocess = function (ev) {
          if (total >= wanted) return;
          const data = ev.inputBuffer.getChannelData(0);
          chunks.push(new Float32Array(data)); total += data.length;
          if (total < wanted) return;
          recorder.onaudioprocess = null;
          sources.forEach(function (s) { s.disconnect(); });
          mix.disconnect(); recorder.disconnect(); silent.disconnect();
          const pcm = new Int16Array(total);
          let i = 0;
          chunks.forEach(function (c) { for (let k = 0; k < c.length; k++) {
            pcm[i++] = Math.max(-32768, Math.min(32767, Math.round(c[k] * 32767))); } });
          const bytes = new Uint8Array(pcm.buffer);
          let bin = "";
          for (let k = 0; k < bytes.length; k += 0x8000) {
            bin += String.fromCharCode.apply(null, bytes.subarray(k, k + 0x8000));
          }
          resolve({ rate: audioCtx.sampleRate, pcm: btoa(bin) });
        };
      });
    });
  }

  // Sum of framesDecoded over every remote video receiver.
  function framesDecoded() {
    const pcs = Object.values(subscribers).map(function (h) { return h.webrtcStuff && h.webrtcStuff.pc; })
      .filter(Boolean);
    return Promise.all(pcs.map(function (pc) { return pc.getStats(); })).then(function (reports) {
      let total = 0;
      reports.forEach(function (r) { r.forEach(function (s) {
        if (s.type === "inbound-rtp" && s.kind === "video") total += s.framesDecoded || 0; }); });
      return total;
    });
  }

  // A hash of the pixels of each remote video (drawn on a small canvas); changes when the picture moves.
  function remoteFrameHashes() {
    const out = {};
    Object.keys(remoteStreams).forEach(function (feed) {
      const video = document.getElementById("remote-" + feed);
      if (!video || !video.videoWidth) return;
      const canvas = document.createElement("canvas");
      canvas.width = 160; canvas.height = 90;
      const ctx = canvas.getContext("2d");
      ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
      const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let h = 2166136261;
      for (let i = 0; i < data.length; i++) { h ^= data[i]; h = Math.imul(h, 16777619) >>> 0; }
      out[feed] = h;
    });
    return out;
  }

  window.sipmediagw = {
    state: state, start: start, leave: leave, remoteAudioFrequency: remoteAudioFrequency, toneHeard: toneHeard,
    recordRemoteAudio: recordRemoteAudio,
    framesDecoded: framesDecoded, remoteFrameHashes: remoteFrameHashes,
    remoteCount: function () { return Object.keys(remoteStreams).length; }
  };

  window.addEventListener("load", function () {
    document.getElementById("register").onclick = function () {
      start(document.getElementById("username").value || "guest");
    };
    document.getElementById("leave").onclick = function () { leave(); };
    if (params.get("name")) start(params.get("name"));
  });
  window.addEventListener("beforeunload", function () { leave(); });
})();
