/* SHA-256 for the dataset upload page (static/js/dataset-upload.js), off the page's main
 * thread: hashing a file of hundreds of megabytes there stalled the page for seconds at a
 * time, so Pause and Cancel did not respond (issue 14).
 *
 * A whole file is hashed a piece at a time with js-sha256 (static/vendor/js-sha256/, loaded
 * with importScripts from the URL the page sends first): SubtleCrypto has no incremental
 * digest, and a file may not fit in memory. A chunk (one buffer) is hashed with SubtleCrypto
 * where the worker has it (a secure context), else with js-sha256 too.
 *
 * Messages in: {kind: "init", sha256Url}; {kind: "file", id, file, piece}; {kind: "chunk", id,
 * buffer} (the buffer is transferred, and transferred back); {kind: "pause"} and
 * {kind: "resume"} between a file's pieces (a pause that comes when no file is being hashed,
 * e.g. just after its last piece, is ignored: nothing would ever resume it). Cancelling is the
 * page terminating the worker.
 * Messages out: {id, kind: "progress", bytes}; {id, kind: "done", sha256, buffer?};
 * {id, kind: "unreadable"}; {id, kind: "error", message}. */
"use strict";

let resumed = null;      // a promise while paused: the next piece waits for it
let resume = () => {};
let files = 0;           // files being hashed now

const unpause = () => {
  resumed = null;
  resume();
};

const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");

const hashFile = async (message) => {
  files += 1;
  try {
    await hashPieces(message);
  } finally {
    files -= 1;
    // A pause left over (it came as the last piece ended) must not hold the next file.
    if (!files) { unpause(); }
  }
};

const hashPieces = async ({ id, file, piece }) => {
  const hash = self.sha256.create();
  for (let offset = 0; offset < file.size; offset += piece) {
    if (resumed) { await resumed; }
    let buffer;
    try {
      buffer = await file.slice(offset, offset + piece).arrayBuffer();
    } catch (e) {
      self.postMessage({ id, kind: "unreadable" });
      return;
    }
    hash.update(buffer);
    self.postMessage({ id, kind: "progress", bytes: buffer.byteLength });
  }
  self.postMessage({ id, kind: "done", sha256: hash.hex() });
};

const hashChunk = async ({ id, buffer }) => {
  const sha256 = self.crypto && self.crypto.subtle
    ? hex(await self.crypto.subtle.digest("SHA-256", buffer))
    : self.sha256(buffer);
  self.postMessage({ id, kind: "done", sha256, buffer }, [buffer]);
};

self.onmessage = (event) => {
  const message = event.data;
  if (message.kind === "init") {
    self.importScripts(message.sha256Url);
  } else if (message.kind === "pause") {
    if (files && !resumed) { resumed = new Promise((resolve) => { resume = resolve; }); }
  } else if (message.kind === "resume") {
    unpause();
  } else {
    const work = message.kind === "file" ? hashFile(message) : hashChunk(message);
    work.catch((error) => self.postMessage({ id: message.id, kind: "error", message: String(error) }));
  }
};
