// sipmediagw getUserMedia wrapper, added with CDP Page.addScriptToEvaluateOnNewDocument so it runs in every document
// before the page's own scripts. browser.py appends "(CONFIG)" to this function expression.
//
// Why: Chromium's fake capture flag fakes the microphone too, so the gateway cannot use it; instead
//  - audio = the real PulseAudio microphone (the caller's voice), with echo cancellation, noise suppression and
//    automatic gain control forced off (they would eat the far-end audio the gateway relays);
//  - video = a canvas.captureStream() drawn from the caller's video served as MJPEG on 127.0.0.1 (mjpeg.py).
// The stream is fetched in CORS mode (the relay sends Access-Control-Allow-Origin: *) so the canvas is not tainted.
// When the MJPEG stream breaks (relay restarted) it is fetched again, and the track keeps running meanwhile.
// The stream's URL holds the relay's per-start token (mjpeg.py): the page, which may be hostile, must not learn it.
// It lives in this closure only (never in window.__sipmediagw) and is handed, before any page script runs, to a
// dedicated worker made from a data: URL that does the fetching: a worker's requests are not in the page's resource
// timing (where the page would read the URL), a data: worker has no origin a service worker of the page could
// control, and the page cannot patch fetch or Response in the worker's own realm. Where the page's
// Content-Security-Policy refuses that worker, the stream is read in the page itself (the camera works; the token is
// then no secret to that page).
// An audio-only gateway (config.audioOnly) has no camera at all: the page sees no videoinput device, a request for
// audio and video gets the microphone alone, a request for video alone fails as on a machine without a camera.
(function (config) {
  'use strict';
  if (window.__sipmediagw || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return; // already installed, or an insecure context where the page cannot capture anyway
  }
  const mediaDevices = navigator.mediaDevices;
  const realGetUserMedia = mediaDevices.getUserMedia.bind(mediaDevices);
  const realEnumerateDevices = mediaDevices.enumerateDevices.bind(mediaDevices);
  const width = config.cameraSize[0];
  const height = config.cameraSize[1];
  const fps = config.fps || 15;
  const audioOnly = !!config.audioOnly;
  const CAMERA_ID = 'sipmediagw-camera';
  const RETRY_MS = 1000;
  const STALL_MS = 10000;
  const cameraUrl = (config.cameraUrl && !audioOnly) ? String(config.cameraUrl) : null;
  let camera = null; // created on the first video request
  // Keypad controls (room.py Room._set_sent_tracks): every track handed to the page, and whether each kind is on. A
  // disabled track is sent as silence / black frames whatever the page does, so muting works on any room page.
  const handed = [];
  const enabledKinds = { audio: true, video: true };

  function handOut(track) {
    track.enabled = enabledKinds[track.kind] !== false;
    handed.push(track);
    track.addEventListener('ended', function () {
      const i = handed.indexOf(track);
      if (i >= 0) {
        handed.splice(i, 1);
      }
    });
    return track;
  }

  function setEnabled(kind, on) {
    // Returns how many live tracks of `kind` the page holds (0: none to mute, the caller is told so).
    enabledKinds[kind] = !!on;
    let count = 0;
    handed.forEach(function (t) {
      if (t.kind === kind && t.readyState === 'live') {
        t.enabled = !!on;
        count += 1;
      }
    });
    return count;
  }

  function drawContained(ctx, picture) {
    // Scale the frame into the canvas keeping its aspect ratio (the relay already sends camera_size frames, this is
    // only a safety net): never crop.
    const scale = Math.min(width / picture.width, height / picture.height);
    const dw = Math.round(picture.width * scale);
    const dh = Math.round(picture.height * scale);
    if (dw !== width || dh !== height) {
      ctx.fillStyle = '#000';
      ctx.fillRect(0, 0, width, height);
    }
    ctx.drawImage(picture, Math.floor((width - dw) / 2), Math.floor((height - dh) / 2), dw, dh);
  }

  // Reads the MJPEG stream at `url` for ever: onConnect() at each connection, onFrame(ImageBitmap) for each frame.
  // Self-contained (no variable from around it): it also runs, as text, inside the camera worker.
  // The stream is read with fetch() rather than an <img>: an <img> fires no event when a multipart response ends,
  // so it would silently freeze on the last frame after the relay restarts. Frames are the JPEGs between SOI and EOI
  // markers (multipart headers are skipped); decoding a Blob keeps the canvas untainted.
  function readCamera(url, onConnect, onFrame, retryMs, stallMs) {
    let lastFrameAt = 0;

    function indexOfMarker(buf, from, second) {
      // Position of the two-byte JPEG marker 0xFF <second> at or after `from`, or -1. The native indexOf jumps from
      // one 0xFF to the next (measured on 640x360 frames: half the time of a byte loop in 64 KiB reads, a sixth in
      // 1 KB reads; docs/benchmarks.md).
      for (let i = buf.indexOf(0xff, from); i >= 0 && i < buf.length - 1; i = buf.indexOf(0xff, i + 1)) {
        if (buf[i + 1] === second) {
          return i;
        }
      }
      return -1;
    }

    async function readOnce() {
      onConnect();
      const controller = new AbortController();
      const started = Date.now();
      const watchdog = setInterval(function () {
        if (Date.now() - Math.max(lastFrameAt, started) > stallMs) {
          controller.abort(); // connected but silent: start over
        }
      }, 1000);
      try {
        const response = await fetch(url, { cache: 'no-store', mode: 'cors', signal: controller.signal });
        if (!response.ok || !response.body) {
          throw new Error('camera HTTP ' + response.status);
        }
        const reader = response.body.getReader();
        let buf = new Uint8Array(0);
        // Bytes at the start of `buf` (which then begins with an SOI) already searched for the EOI: a frame arrives
        // in several chunks, and each chunk resumes the search instead of starting over.
        let searched = 0;
        for (;;) {
          const chunk = await reader.read();
          if (chunk.done) {
            break;
          }
          if (buf.length) {
            const joined = new Uint8Array(buf.length + chunk.value.length);
            joined.set(buf);
            joined.set(chunk.value, buf.length);
            buf = joined;
          } else {
            buf = chunk.value;
          }
          for (;;) {
            const soi = searched ? 0 : indexOfMarker(buf, 0, 0xd8);
            if (soi < 0) {
              buf = buf.subarray(Math.max(0, buf.length - 1));
              break;
            }
            if (soi > 0) {
              buf = buf.subarray(soi);
            }
            const eoi = indexOfMarker(buf, Math.max(2, searched), 0xd9);
            if (eoi < 0) {
              searched = Math.max(2, buf.length - 1); // a marker split across chunks is found next time
              break;
            }
            searched = 0;
            // views, not copies: `buf` is never written to (each chunk makes a new array)
            const jpeg = buf.subarray(0, eoi + 2);
            buf = buf.subarray(eoi + 2);
            try {
              onFrame(await createImageBitmap(new Blob([jpeg], { type: 'image/jpeg' })));
              lastFrameAt = Date.now();
            } catch (e) {
              // A corrupt frame: keep the previous picture.
            }
          }
        }
      } catch (e) {
        // Relay down, restarting or stalled: retried below.
      } finally {
        clearInterval(watchdog);
      }
    }

    (async function () {
      for (;;) {
        await readOnce();
        await new Promise(function (resolve) { setTimeout(resolve, retryMs); });
      }
    })();
  }

  // The camera worker's program: the first message is the URL, 'start' starts reading; frames go back transferred.
  function cameraWorkerMain(read, retryMs, stallMs) {
    let url = null;
    let started = false;
    self.onmessage = function (event) {
      if (url === null && event.data && typeof event.data.url === 'string') {
        url = event.data.url;
      } else if (event.data === 'start' && url !== null && !started) {
        started = true;
        read(url, function () { self.postMessage({ connect: true }); },
          function (bitmap) { self.postMessage({ frame: bitmap }, [bitmap]); }, retryMs, stallMs);
      }
    };
  }

  // The worker is made now, while no page script exists: none can watch the URL go to it. Natives needed later to
  // talk to it are kept from now too (a page may replace Worker.prototype.postMessage).
  const applyNative = Reflect.apply;
  const postToWorker = window.Worker ? window.Worker.prototype.postMessage : null;
  let cameraWorker = null;
  let onWorkerFrame = null; // set when the camera exists
  let onWorkerFailed = null;
  if (cameraUrl && window.Worker) {
    try {
      cameraWorker = new window.Worker('data:text/javascript,' + encodeURIComponent(
        '(' + cameraWorkerMain.toString() + ')(' + readCamera.toString() + ',' + RETRY_MS + ',' + STALL_MS + ');'));
      applyNative(postToWorker, cameraWorker, [{ url: cameraUrl }]);
      cameraWorker.onmessage = function (event) {
        if (onWorkerFrame) {
          onWorkerFrame(event.data);
        } else if (event.data && event.data.frame) {
          event.data.frame.close();
        }
      };
      cameraWorker.onerror = function () {
        // Refused by the page's CSP, or it failed: the page reads the stream itself from now on.
        cameraWorker = null;
        if (onWorkerFailed) {
          onWorkerFailed();
        }
      };
    } catch (e) {
      cameraWorker = null;
    }
  }

  function createCamera() {
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, width, height);
    const state = {
      canvas: canvas, stream: canvas.captureStream(fps), last: null, connects: 0, frames: 0, lastFrameAt: 0,
    };

    function show(bitmap) {
      if (state.last && state.last.close) {
        state.last.close();
      }
      state.last = bitmap;
      drawContained(ctx, bitmap);
      state.frames += 1;
      state.lastFrameAt = Date.now();
    }

    function receive(message) {
      if (message && message.connect) {
        state.connects += 1;
      } else if (message && message.frame) {
        show(message.frame);
      }
    }

    function readHere() {
      readCamera(cameraUrl, function () { state.connects += 1; }, show, RETRY_MS, STALL_MS);
    }

    // Repaint the last picture now and then so the track keeps producing frames when the caller's image is static.
    setInterval(function () {
      if (state.last && Date.now() - state.lastFrameAt > 1000) {
        drawContained(ctx, state.last);
      }
    }, 1000);
    if (cameraWorker) {
      onWorkerFrame = receive;
      onWorkerFailed = readHere;
      applyNative(postToWorker, cameraWorker, ['start']);
    } else if (cameraUrl) {
      readHere();
    }
    return state;
  }

  function cameraTrack() {
    if (!camera) {
      camera = createCamera();
    }
    // A clone per request: the page stopping its track must not stop the shared canvas stream.
    return camera.stream.getVideoTracks()[0].clone();
  }

  function audioConstraints(requested) {
    const base = (requested && typeof requested === 'object') ? Object.assign({}, requested) : {};
    // There is one microphone (PulseAudio's default source, chosen by PULSE_SOURCE): ignore device choices that a
    // page remembered from elsewhere.
    delete base.deviceId;
    delete base.groupId;
    base.echoCancellation = false;
    base.noiseSuppression = false;
    base.autoGainControl = false;
    return base;
  }

  async function getUserMedia(constraints) {
    constraints = constraints || {};
    if (audioOnly && constraints.video && !constraints.audio) {
      throw new DOMException('Requested device not found', 'NotFoundError');
    }
    const tracks = [];
    if (constraints.audio) {
      const mic = await realGetUserMedia({ audio: audioConstraints(constraints.audio) });
      mic.getAudioTracks().forEach(function (t) { tracks.push(handOut(t)); });
    }
    if (constraints.video && !audioOnly) {
      tracks.push(handOut(cameraTrack()));
    }
    if (!tracks.length) {
      throw new TypeError("getUserMedia: at least one of audio and video must be requested");
    }
    return new MediaStream(tracks);
  }

  async function enumerateDevices() {
    const real = await realEnumerateDevices();
    const devices = real.filter(function (d) { return d.kind !== 'videoinput'; });
    if (audioOnly) {
      return devices;
    }
    const fake = {
      deviceId: CAMERA_ID, groupId: CAMERA_ID, kind: 'videoinput', label: 'SIP caller',
      toJSON: function () { return { deviceId: CAMERA_ID, groupId: CAMERA_ID, kind: 'videoinput', label: 'SIP caller' }; },
    };
    devices.push(fake);
    return devices;
  }

  mediaDevices.getUserMedia = getUserMedia;
  mediaDevices.enumerateDevices = enumerateDevices;
  // Legacy callback API still used by some pages.
  navigator.getUserMedia = navigator.webkitGetUserMedia = function (c, ok, fail) {
    getUserMedia(c).then(ok, fail);
  };
  // Introspection for tests and debugging (frames drawn, reconnections), and the keypad's mute hooks.
  Object.defineProperty(window, '__sipmediagw', {
    value: Object.freeze({
      // the configuration without the camera's URL (see the top of this file)
      config: Object.freeze({ cameraSize: config.cameraSize, fps: fps, audioOnly: audioOnly, camera: !!cameraUrl }),
      stats: function () { return camera ? { frames: camera.frames, connects: camera.connects } : null; },
      setEnabled: setEnabled,
      enabled: function () { return Object.assign({}, enabledKinds); },
    }),
  });
})
