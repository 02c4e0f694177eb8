/* Upload a new version of a dataset, or of a model, from the browser: chosen files or a whole
 * folder, hashed here, sent in checked chunks, and resumable after a pause, a dropped
 * connection or a reload. Configured by data- attributes on #dataset-upload
 * (templates/datasets/upload.html, templates/models/upload.html; the form itself is
 * templates/partials/upload_panel.html); no inline script (the site's CSP forbids it):
 *
 * - data-uploads-url: where the manifest is POSTed to start a version;
 * - data-upload-base: the upload routes' base (an upload is <base><id>/);
 * - data-version-url: the finished version's page, "{number}" standing for its number;
 * - data-storage-key (optional): where an unfinished upload is remembered.
 *
 * Fields of the form marked data-start-field="<name>" go with the manifest under that name
 * (data-json: parsed as JSON first; empty is left out). A model's start may answer that a
 * version with exactly these files exists ({"existing": true, "version": {...}}): that
 * version is the result, and nothing is sent.
 *
 * The protocol is the datasets API's (apps/datasets/api/views.py), with the session and the
 * CSRF header: POST the manifest (path, size and SHA-256 of every file) and get back the
 * blobs Lattice still needs with their missing chunk indexes; PUT each chunk with its SHA-256
 * in X-Chunk-SHA256; GET the upload to learn what is still missing; POST complete. When the
 * upload says "direct" (S3), each chunk goes to a URL Lattice presigns instead.
 *
 * Every SHA-256 (a whole file's, a piece at a time; a chunk's) is computed in a Web Worker,
 * static/js/hash-worker.js, so the page stays responsive while it hashes hundreds of megabytes:
 * Pause and Cancel answer at once. The worker uses js-sha256 (static/vendor/js-sha256/, MIT,
 * from the npm registry; see static/vendor/README.md) for a file, since SubtleCrypto only
 * hashes a whole buffer and a file may not fit in memory; and SubtleCrypto for a chunk where
 * it has it (a secure context), js-sha256 otherwise. The page itself uses js-sha256 only for
 * the manifest's short digest.
 *
 * Resuming: the open upload's id and the digest of its manifest are kept in localStorage, per
 * team and dataset. Choosing the same files again gives the same digest, so the page GETs
 * that upload and sends only the chunks still missing. */
(() => {
  "use strict";

  const root = document.getElementById("dataset-upload");
  if (!root || !window.fetch) { return; }

  const IN_FLIGHT = 3;                 // chunks on their way at once
  const TRIES = 3;                     // per chunk; then the person decides (Resume)
  const BACKOFF_MS = 1000;             // before the second try; doubled before the third
  const HASH_PIECE = 2 * 1024 * 1024;  // read this much of a file at a time to hash it: Pause
                                       // waits for the piece in hand (a few tens of ms)
  const MAX_ROWS = 500;                // files listed with a progress bar of their own

  const byId = (id) => document.getElementById(id);
  const ui = {
    form: byId("ds-form"),
    folder: byId("ds-folder"),
    files: byId("ds-files"),
    message: byId("ds-message"),
    allowIdentical: byId("ds-allow-identical"),  // only where identical files may make one
    extra: Array.from(document.querySelectorAll("#ds-form [data-start-field]")),
    selection: byId("ds-selection"),
    start: byId("ds-start"),
    pause: byId("ds-pause"),
    cancel: byId("ds-cancel"),
    resume: byId("ds-resume"),
    pending: byId("ds-pending"),
    progress: byId("ds-progress"),
    status: byId("ds-status"),
    error: byId("ds-error"),
    done: byId("ds-done"),
    hashBar: byId("ds-hash-progress"),
    hashText: byId("ds-hash-text"),
    totalBar: byId("ds-total-progress"),
    totalText: byId("ds-total-text"),
    rows: byId("ds-file-rows"),
    more: byId("ds-more-files"),
  };
  const config = {
    csrf: root.dataset.csrf,
    uploadsUrl: root.dataset.uploadsUrl,
    uploadBase: root.dataset.uploadBase,
    versionUrl: root.dataset.versionUrl,
    hashWorkerUrl: root.dataset.hashWorkerUrl,
    sha256Url: root.dataset.sha256Url,
    storageKey: root.dataset.storageKey || `lattice:dataset-upload:${root.dataset.team}/${root.dataset.dataset}`,
  };

  let chosen = [];            // [{file, path}], sorted by path
  let state = "idle";
  let manifest = [];          // [{path, size, sha256}], in the order of chosen
  let upload = null;          // the API's answer: {id, chunk_size, direct, blobs: [...]}
  let fileOf = new Map();     // sha256 -> a File holding those bytes
  let pathOf = new Map();     // sha256 -> the path of that file, for messages
  let queue = [];             // [{sha, index}]: chunks still to send
  let inFlight = 0;
  let firstError = null;      // what stopped the upload, shown as it is
  let direct = true;          // false once the storage turned the browser away
  // "path\nsize\nmodified" -> sha256: a second Start, or Start after a refusal, does not
  // read the files again.
  const hashCache = new Map();
  // Progress in bytes. A blob may be the bytes of several files (copies): each counts.
  let missingOf = new Map();  // sha256 -> bytes still to send
  let copiesOf = new Map();   // sha256 -> how many files of the manifest hold it
  let barsOf = new Map();     // sha256 -> [{bar, size}] of the files listed
  let totalBytes = 0;
  let doneBytes = 0;

  // --- little things --------------------------------------------------------------------

  const UNITS = ["KB", "MB", "GB", "TB"];
  const formatSize = (bytes) => {
    if (bytes < 1024) { return `${bytes} byte${bytes === 1 ? "" : "s"}`; }
    let value = bytes / 1024;
    let unit = 0;
    while (value >= 1024 && unit < UNITS.length - 1) { value /= 1024; unit += 1; }
    return `${value.toFixed(1)} ${UNITS[unit]}`;
  };
  const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
  const sleep = (ms) => new Promise((resolve) => { window.setTimeout(resolve, ms); });

  // --- hashing, in the worker ----------------------------------------------------------

  const CANCELLED = new Error("Cancelled.");
  let worker = null;
  let hashingFile = false;    // a file is with the worker now: Pause holds it between pieces
  // While paused during hashing: {promise, resolve, reject}. Resume resolves it, Cancel
  // rejects it; the upload waits for it even when the hashing ended as Pause was pressed.
  let hashPause = null;
  let jobs = new Map();       // id -> {resolve, reject, progress}
  let lastJob = 0;

  const stopWorker = (reason) => {
    if (worker) { worker.terminate(); }
    worker = null;
    for (const job of jobs.values()) { job.reject(reason); }
    jobs = new Map();
  };

  const hashWorker = () => {
    if (worker) { return worker; }
    worker = new Worker(config.hashWorkerUrl);
    worker.postMessage({ kind: "init", sha256Url: config.sha256Url });
    worker.addEventListener("message", (event) => {
      const { id, kind } = event.data;
      const job = jobs.get(id);
      if (!job) { return; }
      if (kind === "progress") { job.progress(event.data.bytes); return; }
      jobs.delete(id);
      if (kind === "done") {
        job.resolve(event.data);
      } else {
        job.reject(kind === "unreadable" ? job.unreadable : new Error(`The files could not be checked: ${event.data.message}`));
      }
    });
    worker.addEventListener("error", (event) => {
      event.preventDefault();
      stopWorker(new Error("The page could not check the files (its hashing script did not load): reload it and try again."));
    });
    return worker;
  };

  const ask = (message, { progress = () => {}, unreadable = null, transfer = [] } = {}) => (
    new Promise((resolve, reject) => {
      lastJob += 1;
      jobs.set(lastJob, { resolve, reject, progress, unreadable });
      hashWorker().postMessage({ ...message, id: lastJob }, transfer);
    })
  );

  // The buffer goes to the worker and comes back with its digest.
  const chunkDigest = async (buffer) => {
    const { sha256, buffer: back } = await ask({ kind: "chunk", buffer }, { transfer: [buffer] });
    return { checksum: sha256, buffer: back };
  };

  const remembered = () => {
    try { return JSON.parse(window.localStorage.getItem(config.storageKey) || "null"); } catch (e) { return null; }
  };
  const remember = (value) => {
    // Without storage (a private window) everything works but resuming after a reload.
    try { window.localStorage.setItem(config.storageKey, JSON.stringify(value)); } catch (e) { /* see above */ }
  };
  const forget = () => {
    try { window.localStorage.removeItem(config.storageKey); } catch (e) { /* nothing kept */ }
  };

  // --- the API ---------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;  // 0: no answer
    }
  }

  // Worth another try: no answer, a server error, a rate limit, or a chunk that arrived
  // damaged or short (400: "Send it again"). Not a refusal (403, 404, 409).
  const retryable = (error) => error instanceof ApiError && (
    error.status === 0 || error.status === 400 || error.status === 408
    || error.status === 429 || error.status >= 500
  );

  const api = async (method, url, { json, body, headers = {} } = {}) => {
    const options = {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": config.csrf, ...headers },
    };
    if (json !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(json);
    } else if (body !== undefined) {
      options.body = body;
    }
    let response;
    try {
      response = await fetch(url, options);
    } catch (e) {
      throw new ApiError("The connection to Lattice was lost.", 0);
    }
    if (response.status === 204) { return null; }
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const message = data && data.error && data.error.message;
      throw new ApiError(message || `Lattice answered ${response.status} ${response.statusText}`.trim() + ".", response.status);
    }
    if (data === null) { throw new ApiError("Lattice's answer was cut short.", 0); }
    return data;
  };

  const uploadUrl = (id) => `${config.uploadBase}${id}/`;

  // What the form's other fields add to the start (a model's format and metadata, say).
  const startFields = () => {
    const fields = {};
    for (const input of ui.extra) {
      const value = input.value.trim();
      if (!value) { continue; }
      if (input.hasAttribute("data-json")) {
        try {
          fields[input.dataset.startField] = JSON.parse(value);
        } catch (e) {
          const label = input.labels && input.labels[0] ? input.labels[0].textContent.trim() : input.dataset.startField;
          throw new Error(`${label} is not valid JSON: ${e.message}`);
        }
      } else {
        fields[input.dataset.startField] = value;
      }
    }
    return fields;
  };
  const chunkUrl = (sha, index) => `${uploadUrl(upload.id)}blobs/${sha}/chunks/${index}/`;

  const putToStorage = async (target, buffer) => {
    let response;
    try {
      response = await fetch(target.url, {
        method: target.method || "PUT", headers: target.headers || {}, body: buffer, credentials: "omit",
      });
    } catch (e) {
      throw new ApiError("The storage could not be reached from this browser.", 0);
    }
    if (!response.ok) {
      const text = await response.text().catch(() => "");
      const found = /<Message>([^<]*)<\/Message>/.exec(text);
      throw new ApiError(`The storage refused a chunk: ${found ? found[1] : response.status}.`, response.status);
    }
  };

  // --- sending chunks --------------------------------------------------------------------

  const sendOnce = async ({ sha, index }) => {
    const file = fileOf.get(sha);
    const start = index * upload.chunk_size;
    const end = Math.min(start + upload.chunk_size, file.size);
    let read;
    try {
      read = await file.slice(start, end).arrayBuffer();
    } catch (e) {
      throw new Error(`${pathOf.get(sha)} could not be read (was it changed or moved?): choose the files again and press Start.`);
    }
    const { checksum, buffer } = await chunkDigest(read);
    if (upload.direct && direct) {
      const target = await api("POST", `${chunkUrl(sha, index)}target/`, { json: { sha256: checksum } });
      if (new URL(target.url, window.location.href).origin !== window.location.origin) {
        try {
          await putToStorage(target, buffer);
          return end - start;
        } catch (error) {
          if (error.status !== 0) { throw error; }
          // Turned away before it left (the bucket's CORS, or this site's CSP): from now on
          // every chunk goes through Lattice, which sends it on.
          direct = false;
        }
      }
    }
    await api("PUT", chunkUrl(sha, index), {
      body: buffer,
      headers: { "Content-Type": "application/octet-stream", "X-Chunk-SHA256": checksum },
    });
    return end - start;
  };

  const sendChunk = async (job) => {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await sendOnce(job);
      } catch (error) {
        if (attempt >= TRIES || !retryable(error)) { throw error; }
        await sleep(BACKOFF_MS * 2 ** (attempt - 1));
      }
    }
  };

  const received = (sha, bytes) => {
    missingOf.set(sha, Math.max(0, (missingOf.get(sha) || 0) - bytes));
    doneBytes += bytes * (copiesOf.get(sha) || 1);
    drawFile(sha);
    drawTotal();
  };

  // Issue chunks while sending; when nothing is on its way any more, settle the state.
  const pump = () => {
    while (state === "sending" && inFlight < IN_FLIGHT && queue.length) {
      const job = queue.shift();
      inFlight += 1;
      sendChunk(job)
        .then((bytes) => received(job.sha, bytes))
        .catch((error) => {
          queue.unshift(job);  // only this chunk is sent again, on Resume
          if (!firstError) { firstError = error; }
          if (state === "sending" || state === "pausing") { setState("failing"); }
        })
        .finally(() => {
          inFlight -= 1;
          pump();
        });
    }
    if (inFlight > 0) {
      drawStatus();
    } else if (state === "sending" && !queue.length) {
      complete();
    } else if (state === "pausing") {
      setState("paused");
    } else if (state === "failing") {
      failed(firstError);
    }
  };

  // --- the steps -------------------------------------------------------------------------

  const hashAll = async () => {
    const total = chosen.reduce((sum, c) => sum + c.file.size, 0);
    let hashed = 0;
    const draw = (current) => {
      ui.hashBar.max = Math.max(total, 1);
      ui.hashBar.value = total ? hashed : 1;
      ui.hashText.textContent = current
        ? `${formatSize(hashed)} of ${formatSize(total)} · ${current}`
        : `${plural(chosen.length, "file")}, ${formatSize(total)}`;
    };
    draw("");
    const entries = [];
    for (const { file, path } of chosen) {
      const key = `${path}\n${file.size}\n${file.lastModified}`;
      let sha = hashCache.get(key);
      if (sha) {
        hashed += file.size;
      } else {
        // A Pause that came as the last file finished reached a worker hashing nothing:
        // wait here for Resume (a Cancel rejects this) before handing it the next file.
        if (hashPause) { await hashPause.promise; }
        const before = hashed;
        hashingFile = true;
        try {
          ({ sha256: sha } = await ask({ kind: "file", file, piece: HASH_PIECE }, {
            progress: (bytes) => { hashed += bytes; draw(path); },
            unreadable: new Error(`${path} could not be read (was it changed or moved?): choose the files again.`),
          }));
        } catch (error) {
          hashed = before;
          throw error;
        } finally {
          hashingFile = false;
        }
        hashCache.set(key, sha);
      }
      entries.push({ path, size: file.size, sha256: sha });
    }
    draw("");
    return entries;
  };

  // What the upload still needs, as a queue of chunks and as bytes per blob. Blobs take
  // turns, so chunks of different files are on their way together.
  const plan = (body) => {
    upload = body;
    missingOf = new Map();
    const lists = [];
    for (const blob of body.blobs) {
      let bytes = 0;
      for (const index of blob.missing) {
        bytes += Math.min(body.chunk_size, blob.size - index * body.chunk_size);
      }
      missingOf.set(blob.sha256, bytes);
      lists.push(blob.missing.map((index) => ({ sha: blob.sha256, index })));
    }
    queue = [];
    for (let i = 0; lists.some((list) => i < list.length); i += 1) {
      for (const list of lists) { if (i < list.length) { queue.push(list[i]); } }
    }
    copiesOf = new Map();
    totalBytes = 0;
    let missing = 0;
    for (const entry of manifest) {
      copiesOf.set(entry.sha256, (copiesOf.get(entry.sha256) || 0) + 1);
      totalBytes += entry.size;
      missing += missingOf.get(entry.sha256) || 0;
    }
    doneBytes = totalBytes - missing;  // files already stored count as done
    drawRows();
    drawTotal();
  };

  const openUpload = async (id) => {
    try {
      const body = await api("GET", uploadUrl(id));
      return body.status === "abandoned" ? null : body;
    } catch (error) {
      if (error.status === 404) { return null; }  // gone: start afresh
      throw error;
    }
  };

  const start = async () => {
    if (!chosen.length || !["idle", "cancelled", "done"].includes(state)) { return; }
    if (!window.sha256 || !window.Worker) {
      stopped(new Error("The page did not load completely: reload it and try again."));
      return;
    }
    clearMessages();
    let fields;
    try {
      fields = startFields();
    } catch (error) {
      showError(error);
      ui.progress.hidden = false;
      return;
    }
    ui.progress.hidden = false;
    firstError = null;
    setState("hashing");
    try {
      manifest = await hashAll();
      // Pause pressed as the last piece was hashed: the page says Paused, so nothing is
      // sent until Resume (or Cancel).
      if (hashPause) { await hashPause.promise; }
    } catch (error) {
      if (error === CANCELLED) {
        setState("cancelled");
      } else {
        stopped(error);
      }
      return;
    } finally {
      endHashPause();
    }
    fileOf = new Map();
    pathOf = new Map();
    manifest.forEach((entry, i) => {
      if (!fileOf.has(entry.sha256)) {
        fileOf.set(entry.sha256, chosen[i].file);
        pathOf.set(entry.sha256, entry.path);
      }
    });
    const digest = window.sha256(JSON.stringify(manifest.map((f) => [f.path, f.size, f.sha256])));
    setState("syncing");
    let body = null;
    try {
      const saved = remembered();
      if (saved && saved.digest === digest) {
        body = await openUpload(saved.upload);
        if (body && body.status === "complete") {
          forget();
          finished(body.version);
          return;
        }
      }
      if (!body) {
        body = await api("POST", config.uploadsUrl, { json: { ...fields, message: ui.message.value, files: manifest } });
        if (body.existing) {
          // These very files are a version already: it is the answer, nothing is sent.
          finished(body.version.number, true);
          return;
        }
        remember({
          upload: body.id,
          dataset: body.dataset,
          digest,
          files: manifest.length,
          bytes: manifest.reduce((sum, f) => sum + f.size, 0),
          at: new Date().toISOString(),
        });
      }
    } catch (error) {
      stopped(error);
      return;
    }
    ui.pending.hidden = true;
    plan(body);
    setState("sending");
    pump();
  };

  // While hashing, the worker stops before its next piece; while sending, no new chunk goes.
  const pause = () => {
    if (state === "hashing") {
      // Only a file in hand can be held; with every file hashed the upload goes on at once.
      if (!hashingFile || !worker) { return; }
      worker.postMessage({ kind: "pause" });
      hashPause = {};
      hashPause.promise = new Promise((resolve, reject) => {
        hashPause.resolve = resolve;
        hashPause.reject = reject;
      });
      hashPause.promise.catch(() => {});  // a Cancel before the hashing ends awaits nothing
      setState("hash-paused");
      return;
    }
    if (state !== "sending") { return; }
    setState(inFlight ? "pausing" : "paused");
  };

  // Cancel the hashing: the worker is stopped where it is. Files hashed to the end are
  // remembered; Start hashes the rest from their beginning.
  const cancel = () => {
    if (!["hashing", "hash-paused"].includes(state)) { return; }
    stopWorker(CANCELLED);
    if (hashPause) { hashPause.reject(CANCELLED); }
  };

  // The hashing ended (or was cancelled): no pause of it is left, on the page or in the worker.
  const endHashPause = () => {
    if (hashPause) { hashPause.resolve(); }
    hashPause = null;
    if (worker) { worker.postMessage({ kind: "resume" }); }
  };

  // After a pause or a failure: ask Lattice what is still missing, and send that.
  const resume = async () => {
    if (state === "hash-paused") {
      if (worker) { worker.postMessage({ kind: "resume" }); }
      setState("hashing");
      if (hashPause) { hashPause.resolve(); }
      hashPause = null;
      return;
    }
    if (!upload || !["paused", "failed"].includes(state)) { return; }
    clearMessages();
    firstError = null;
    setState("syncing");
    let body;
    try {
      body = await api("GET", uploadUrl(upload.id));
    } catch (error) {
      failed(error);
      return;
    }
    if (body.status === "complete") {
      forget();
      finished(body.version);
      return;
    }
    if (body.status !== "open") {
      forget();
      upload = null;
      stopped(new Error("This upload was abandoned: press Start to begin again."));
      return;
    }
    plan(body);
    setState("sending");
    pump();
  };

  const complete = async () => {
    setState("completing");
    try {
      // Files identical to the latest version make none unless asked (a 409 that says so).
      const version = await api("POST", `${uploadUrl(upload.id)}complete/`, {
        json: { allow_identical: Boolean(ui.allowIdentical && ui.allowIdentical.checked) },
      });
      forget();
      finished(version.number);
    } catch (error) {
      // Nothing was made. Resume asks what is missing, sends it, and completes again.
      failed(error);
    }
  };

  const finished = (number, existing = false) => {
    upload = null;
    totalBytes = manifest.reduce((sum, f) => sum + f.size, 0);
    doneBytes = totalBytes;
    for (const sha of barsOf.keys()) { missingOf.set(sha, 0); drawFile(sha); }
    drawTotal();
    setState("done");
    const link = document.createElement("a");
    link.href = config.versionUrl.replace("{number}", number);
    link.textContent = "See its files";
    const said = existing
      ? `These files are version ${number} already: no new version was made. `
      : `Version ${number} is ready. `;
    ui.done.replaceChildren(document.createTextNode(said), link);
    ui.done.hidden = false;
  };

  // A failure while sending: the upload stays open, Resume goes on.
  const failed = (error) => {
    setState("failed");
    showError(error);
  };

  // A failure before anything was sent: Start again.
  const stopped = (error) => {
    setState("idle");
    showError(error);
  };

  // --- drawing ---------------------------------------------------------------------------

  const STATUS = {
    idle: "",
    hashing: "Checking the files…",
    "hash-paused": "Paused while checking the files. Press Resume to go on.",
    cancelled: "Cancelled. Nothing was sent: press Start to begin again.",
    syncing: "Asking Lattice what it still needs…",
    sending: "Uploading…",
    pausing: "Pausing: the chunks already on their way finish first…",
    paused: "Paused. Press Resume to go on.",
    failing: "A chunk failed: waiting for the others on their way…",
    failed: "Stopped. Press Resume to send what is still missing.",
    completing: "Making the version…",
    done: "",
  };
  const WORKING = ["hashing", "hash-paused", "syncing", "sending", "pausing", "failing", "completing"];
  const UNDER_WAY = ["sending", "pausing", "paused", "failing", "failed"];

  const drawStatus = () => {
    let text = STATUS[state] || "";
    if (state === "sending") {
      text = `Uploading: ${plural(inFlight, "chunk")} on the way, ${queue.length.toLocaleString()} to go.`;
    }
    ui.status.textContent = text;
    root.dataset.state = state;
  };

  const setState = (next) => {
    const focused = document.activeElement;
    state = next;
    const working = WORKING.includes(next);
    ui.start.hidden = UNDER_WAY.includes(next);
    ui.start.disabled = working || !chosen.length;
    ui.pause.hidden = !["hashing", "sending", "pausing", "failing"].includes(next);
    ui.pause.disabled = !["hashing", "sending"].includes(next);
    ui.cancel.hidden = !["hashing", "hash-paused"].includes(next);
    ui.resume.hidden = !["paused", "failed", "hash-paused"].includes(next);
    ui.folder.disabled = working;
    ui.files.disabled = working;
    ui.message.disabled = working || UNDER_WAY.includes(next);
    for (const input of ui.extra) { input.disabled = ui.message.disabled; }
    // The button just pressed (Pause, Cancel, Resume) may have gone: focus stays on the
    // controls, on the one that now answers it, not on the page's start.
    const controls = [ui.resume, ui.start, ui.pause];
    if ([...controls, ui.cancel].includes(focused) && (focused.hidden || focused.disabled)) {
      const next = controls.find((button) => !button.hidden && !button.disabled);
      if (next) { next.focus(); }
    }
    drawStatus();
  };

  const showError = (error) => {
    ui.error.textContent = (error && error.message) || String(error);
    ui.error.hidden = false;
  };

  const clearMessages = () => {
    ui.error.hidden = true;
    ui.error.textContent = "";
    ui.done.hidden = true;
  };

  const drawTotal = () => {
    ui.totalBar.max = Math.max(totalBytes, 1);
    ui.totalBar.value = totalBytes ? doneBytes : 1;
    const percent = totalBytes ? Math.floor((doneBytes / totalBytes) * 100) : 100;
    ui.totalText.textContent = `${formatSize(doneBytes)} of ${formatSize(totalBytes)} (${percent}%)`;
  };

  const drawFile = (sha) => {
    const missing = missingOf.get(sha) || 0;
    for (const { bar, size } of barsOf.get(sha) || []) {
      bar.value = size ? size - missing : 1;
      bar.textContent = `${size ? Math.floor(((size - missing) / size) * 100) : 100}%`;
    }
  };

  const drawRows = () => {
    barsOf = new Map();
    const rows = manifest.slice(0, MAX_ROWS).map((entry) => {
      const row = document.createElement("tr");
      const path = document.createElement("td");
      path.textContent = entry.path;
      const size = document.createElement("td");
      size.textContent = formatSize(entry.size);
      const cell = document.createElement("td");
      const bar = document.createElement("progress");
      bar.max = Math.max(entry.size, 1);
      bar.setAttribute("aria-label", `${entry.path} uploaded`);
      cell.appendChild(bar);
      row.append(path, size, cell);
      if (!barsOf.has(entry.sha256)) { barsOf.set(entry.sha256, []); }
      barsOf.get(entry.sha256).push({ bar, size: entry.size });
      return row;
    });
    ui.rows.replaceChildren(...rows);
    ui.more.hidden = manifest.length <= MAX_ROWS;
    ui.more.textContent = `And ${plural(manifest.length - MAX_ROWS, "more file")}, counted in the total.`;
    for (const sha of barsOf.keys()) { drawFile(sha); }
  };

  // --- choosing files --------------------------------------------------------------------

  // A folder's files come as "folder/sub/file": the dataset holds what is inside the folder.
  const insideFolder = (file) => {
    const parts = (file.webkitRelativePath || file.name).split("/");
    return parts.length > 1 ? parts.slice(1).join("/") : parts[0];
  };

  const choose = (input, other, fromFolder) => {
    other.value = "";
    chosen = Array.from(input.files, (file) => ({ file, path: fromFolder ? insideFolder(file) : file.name }));
    chosen.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const total = chosen.reduce((sum, c) => sum + c.file.size, 0);
    ui.selection.textContent = chosen.length
      ? `${plural(chosen.length, "file")}, ${formatSize(total)}, chosen.`
      : (fromFolder ? "This folder holds no files." : "");
    // A new choice is a new start; an upload left paused stays open, and choosing the same
    // files again resumes it.
    upload = null;
    queue = [];
    clearMessages();
    setState("idle");
  };

  ui.folder.addEventListener("change", () => choose(ui.folder, ui.files, true));
  ui.files.addEventListener("change", () => choose(ui.files, ui.folder, false));
  // Files chosen before this script ran (it is deferred; a quick hand, or the browser
  // restoring the form) count too.
  if (ui.folder.files && ui.folder.files.length) {
    choose(ui.folder, ui.files, true);
  } else if (ui.files.files && ui.files.files.length) {
    choose(ui.files, ui.folder, false);
  }
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    start();
  });
  ui.pause.addEventListener("click", pause);
  ui.cancel.addEventListener("click", cancel);
  ui.resume.addEventListener("click", resume);
  window.addEventListener("beforeunload", (event) => {
    if (WORKING.includes(state)) {
      event.preventDefault();
      event.returnValue = "";  // the upload can be resumed, but say it is under way
    }
  });

  const saved = remembered();
  if (saved && saved.upload) {
    const when = new Date(saved.at);
    ui.pending.textContent = `An upload of ${plural(saved.files || 0, "file")} (${formatSize(saved.bytes || 0)}) `
      + `started ${isNaN(when.getTime()) ? "earlier" : when.toLocaleString()} did not finish. `
      + "Choose the same files or folder and press Start: only what is still missing is sent.";
    ui.pending.hidden = false;
  }
  setState("idle");
})();
