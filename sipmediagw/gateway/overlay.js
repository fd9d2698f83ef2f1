// sipmediagw overlay: drawn over whatever page the room display shows (the video the SIP caller receives), by
// overlay.py through Selenium's execute_script, which hands this function its arguments. Two parts:
//  - the badge (top left, persistent): the call's state the caller must keep seeing ("Microphone off"...);
//  - the panel (centre): the keys, the answer to a key, or why the call ends; it hides itself after `ms`.
// Everything lives under one element appended to <html> (a page replacing its <body> does not remove it), styled
// through the CSSOM (a page's Content-Security-Policy forbids inline style attributes, not this) and sized in vh so
// it stays readable when the caller's system scales 1280x720 down to 640x360. Returns true when the overlay had to be
// created (a new page, or the page removed it).
(function (state) {
  'use strict';
  const ROOT = 'sipmediagw-overlay';
  let root = document.getElementById(ROOT);
  const created = !root;
  if (!root) {
    root = document.createElement('div');
    root.id = ROOT;
    Object.assign(root.style, {
      position: 'fixed', left: '0', top: '0', width: '100vw', height: '100vh', zIndex: '2147483647',
      pointerEvents: 'none', fontFamily: '"DejaVu Sans", "Liberation Sans", Arial, sans-serif', margin: '0',
    });
    const badge = document.createElement('div');
    badge.id = ROOT + '-badge';
    Object.assign(badge.style, {
      position: 'absolute', left: '1.5vw', top: '2vh', display: 'none', flexDirection: 'column', gap: '1vh',
    });
    const panel = document.createElement('div');
    panel.id = ROOT + '-panel';
    Object.assign(panel.style, {
      position: 'absolute', left: '50%', top: '50%', transform: 'translate(-50%, -50%)', minWidth: '50vw',
      maxWidth: '90vw', padding: '3vh 3vw', boxSizing: 'border-box', borderRadius: '2vh', display: 'none',
      background: 'rgba(0, 0, 0, 0.88)', color: '#fff', border: '0.6vh solid #ffd400',
    });
    root.appendChild(badge);
    root.appendChild(panel);
    (document.documentElement || document.body).appendChild(root);
  }
  const badge = document.getElementById(ROOT + '-badge');
  const panel = document.getElementById(ROOT + '-panel');

  // -- badge --------------------------------------------------------------------------------------------------------
  while (badge.firstChild) {
    badge.removeChild(badge.firstChild);
  }
  (state.badge || []).forEach(function (text) {
    const item = document.createElement('div');
    item.textContent = text;
    Object.assign(item.style, {
      background: '#d00000', color: '#fff', fontSize: '4.5vh', fontWeight: 'bold', padding: '0.6vh 1.2vw',
      borderRadius: '1vh', border: '0.4vh solid #fff', width: 'max-content',
    });
    badge.appendChild(item);
  });
  badge.style.display = (state.badge || []).length ? 'flex' : 'none';
  root.dataset.badge = (state.badge || []).join('|');

  // -- panel --------------------------------------------------------------------------------------------------------
  if (window.__sipmediagwPanelTimer) {
    clearTimeout(window.__sipmediagwPanelTimer);
    window.__sipmediagwPanelTimer = null;
  }
  const spec = state.panel;
  while (panel.firstChild) {
    panel.removeChild(panel.firstChild);
  }
  if (!spec || !(state.ms > 0)) {
    panel.style.display = 'none';
    root.dataset.panel = '';
    return created;
  }
  // A call about to end is red (border and background), for people and for the tests reading the caller's video.
  panel.style.borderColor = spec.tone === 'end' ? '#ff4040' : '#ffd400';
  panel.style.background = spec.tone === 'end' ? 'rgba(110, 0, 0, 0.94)' : 'rgba(0, 0, 0, 0.88)';
  if (spec.title) {
    const title = document.createElement('div');
    title.textContent = spec.title;
    Object.assign(title.style, { fontSize: '6vh', fontWeight: 'bold', marginBottom: '2vh', color: '#8fd3ff' });
    panel.appendChild(title);
  }
  (spec.lines || []).forEach(function (line) {
    // [key, label, note, available]
    const row = document.createElement('div');
    Object.assign(row.style, { fontSize: '5vh', margin: '0.8vh 0', display: 'flex', alignItems: 'baseline',
                               gap: '1.5vw', opacity: line[3] === false ? '0.6' : '1' });
    const key = document.createElement('span');
    key.textContent = line[0];
    Object.assign(key.style, { display: 'inline-block', minWidth: '1.6em', textAlign: 'center', fontWeight: 'bold',
                               color: '#000', background: '#ffd400', borderRadius: '1vh' });
    const label = document.createElement('span');
    label.textContent = line[1];
    row.appendChild(key);
    row.appendChild(label);
    if (line[2]) {
      const note = document.createElement('span');
      note.textContent = line[2];
      Object.assign(note.style, { color: line[3] === false ? '#ff9090' : '#9f9', fontSize: '4vh' });
      row.appendChild(note);
    }
    panel.appendChild(row);
  });
  if (spec.message) {
    const message = document.createElement('div');
    message.textContent = spec.message;
    Object.assign(message.style, { fontSize: '6.5vh', fontWeight: 'bold', textAlign: 'center',
                                   marginTop: (spec.lines || []).length ? '2vh' : '0' });
    panel.appendChild(message);
  }
  panel.style.display = 'block';
  root.dataset.panel = spec.kind || 'info';
  window.__sipmediagwPanelTimer = setTimeout(function () {
    panel.style.display = 'none';
    root.dataset.panel = '';
  }, state.ms);
  return created;
})
