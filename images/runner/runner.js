'use strict';

// Wharf function runner: one long-lived process per tenant container, serving every function of that tenant.
//
// Wire protocol (the host side is written against it):
// - Environment: WHARF_PORT (8080), WHARF_HOST (0.0.0.0), WHARF_APP_DIR (/app, read-only for this process).
// - GET /_wharf/ready without x-wharf-route answers 200 {"ok":true}; other paths without it answer 404.
// - Function requests carry x-wharf-route: <name>@<version> and x-request-id: the request's id (ctx.id; the host
//   sends exactly one); the path is /api/run/<tenant>/<name>[/<rest>][?query]. All x-wharf-* headers are removed
//   before code sees the request; x-request-id stays, as the caller's tracing header.
// - The host writes $WHARF_APP_DIR/functions/<name>/<version>/{function.js,config.json} (atomically, never changed
//   afterwards; a node_modules directory may sit beside them) before it routes a request to that version.
//   config.json: {"tenant","name","version","timeout_ms","secrets","meta","dependencies"}; node_modules holds a link
//   per dependency name and one per "name@version" (so require('lodash@4.17.21') loads the declared version).
// - Every response carries x-wt-response-source: webtask (the code answered), compiler (load failure) or proxy
//   (runner-side failure).
// - The host enforces function timeouts and body limits; after an uncaught asynchronous exception this process answers
//   its in-flight requests and exits non-zero, and the host replaces the container.
// - Function output: console.log/info/debug/warn/error/trace/dir write one JSON line each on stdout,
//   {"t":"<ISO time>","lvl":"log|info|debug|warn|error|system","fn":"<function>","rid":"<request id>","msg":"..."},
//   tagged through AsyncLocalStorage with the function and request the call belongs to; a message is cut at
//   LOG_MAX_MESSAGE characters and at most WHARF_LOG_RATE lines per second (bursts of twice that) are written, the
//   rest counted in a "system" line. stderr carries the runner's own diagnostics. Code can still write anything to
//   process.stdout itself (and so imitate a tag): that is its own tenant's log only, as the container is the
//   tenant's alone.
// - ctx.storage talks to the node over $WHARF_APP_DIR/storage.sock (HTTP/JSON, see "Storage" below); the node serves
//   that socket for this container's tenant only.
// - Before it reports ready the runner writes only single lines on stderr starting "[wharf-runner] listening on",
//   "[wharf-runner] warm-up failed" or "[wharf-runner] warmed up in"; the host never shows them to a tenant.
//
// Functions follow the Auth0 Webtask programming model; design/WEBTASK.md is the contract implemented here.
// This file must stay a single dependency-free CommonJS script: the image holds only node and this file.

const fs = require('fs');
const http = require('http');
const path = require('path');
const vm = require('vm');
const crypto = require('crypto');
const Module = require('module');
const querystring = require('querystring');
const util = require('util');
const { AsyncLocalStorage } = require('async_hooks');

const PORT = parsePort(process.env.WHARF_PORT, 8080);
const HOST = process.env.WHARF_HOST || '0.0.0.0';
const APP_DIR = path.resolve(process.env.WHARF_APP_DIR || '/app');
const FUNCTIONS_DIR = path.join(APP_DIR, 'functions');
// Where functions are read from: a private warm-up tree until warmUp() ends, then FUNCTIONS_DIR.
let functionsDir = FUNCTIONS_DIR;
let warming = true; // the ready probe answers 503 until the warm-up ends

// Validated before any filesystem access, so a header can never name a path outside FUNCTIONS_DIR.
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$/;
const VERSION_RE = /^[1-9][0-9]{0,14}$/; // positive, and always a safe integer

// The host enforces function timeouts and body limits; these only reap connections that are truly stuck.
const HEADERS_TIMEOUT_MS = 5 * 60 * 1000;
const REQUEST_TIMEOUT_MS = 15 * 60 * 1000;
// Headers beyond Node's 16 KiB default are legitimate (cookies, JWTs) and the host already bounds them.
const MAX_HEADER_SIZE = 64 * 1024;

// After an uncaught exception the process state is unknown: answer in-flight requests, then leave. These bound how
// long a slow client can delay the exit.
const CRASH_SOCKET_GRACE_MS = 1000;
const CRASH_HARD_DEADLINE_MS = 5000;
const CRASH_EXIT_CODE = 70; // EX_SOFTWARE

const WRAPPER_PARAMS = ['exports', 'require', 'module', '__filename', '__dirname'];

const MSG = {
  notProvisioned: 'Function is not provisioned in this container.',
  notFunction: 'Supplied code must return or export a function.',
  badArity: 'The JavaScript function must have one of the following signatures: ([ctx], callback) or (ctx, req, res).',
  cbError: 'Script returned an error.',
  serialize: 'Error when JSON serializing the result of the JavaScript code.',
  syncThrow: 'Script generated an unhandled synchronous exception.',
  asyncThrow: 'Script generated an unhandled asynchronous exception.',
};

// ---------------------------------------------------------------------------------------------------------------------
// Loading

// name@version -> loaded entry ({fn, form, config, ...}); failures are never cached so a retry re-reads the files.
const loaded = new Map();
// name@version -> promise of a load in progress, so concurrent first requests compile (and run top-level code) once.
const loading = new Map();

function cacheKey(name, version) {
  return name + '@' + version;
}

function getFunction(name, version) {
  const key = cacheKey(name, version);
  let pending = loading.get(key);
  if (!pending) {
    pending = loadFunction(name, version).then((result) => {
      loading.delete(key);
      if (result.ok) {
        loaded.set(key, result);
        evictOlderVersions(name, version);
      }
      return result;
    }, (err) => {
      loading.delete(key);
      throw err;
    });
    loading.set(key, pending);
  }
  return pending;
}

// The host routes to the newest version, so older ones are dead weight; dropping them lets their closures be
// collected once their last request finishes (a request for one would simply load it again).
function evictOlderVersions(name, version) {
  for (const [key, entry] of loaded) {
    if (entry.name === name && entry.version < version) loaded.delete(key);
  }
}

function failure(status, source, body) {
  return { ok: false, status, source, body };
}

async function loadFunction(name, version) {
  const dir = path.join(functionsDir, name, String(version));
  if (path.dirname(path.dirname(dir)) !== functionsDir) {
    // Unreachable with the validated name and version; kept as a last line of defence.
    return failure(400, 'proxy', { code: 400, error: 'Invalid function name or version.' });
  }
  const filename = path.join(dir, 'function.js');

  let code;
  let configText;
  try {
    // Synchronous on purpose: two small files on a local mount read in microseconds, while the threadpool's
    // round trips (a worker woken, then the loop) cost a tenant's first request more than the reads themselves.
    code = fs.readFileSync(filename, 'utf8');
    configText = fs.readFileSync(path.join(dir, 'config.json'), 'utf8');
  } catch (err) {
    if (err && (err.code === 'ENOENT' || err.code === 'ENOTDIR')) {
      return failure(500, 'proxy', { code: 500, error: MSG.notProvisioned });
    }
    return failure(500, 'proxy', { code: 500, error: 'Function files could not be read.', details: safeString(err) });
  }

  const config = parseConfig(configText, name, version);
  if (typeof config === 'string') {
    return failure(500, 'proxy', { code: 500, error: 'Function configuration is invalid.', details: config });
  }

  const compiled = compile(code, filename, config.dependencies);
  if (!compiled.ok) return compiled;

  const fn = exportedFunction(compiled.fn);
  if (typeof fn !== 'function') {
    return failure(400, 'compiler', { code: 400, error: MSG.notFunction });
  }
  if (fn.length < 1 || fn.length > 3) {
    return failure(400, 'compiler', { code: 400, error: MSG.badArity });
  }
  return { ok: true, name, version, fn, form: fn.length, config };
}

// Returns the normalised config, or a string describing why it is unusable.
function parseConfig(text, name, version) {
  let cfg;
  try {
    cfg = JSON.parse(text);
  } catch (err) {
    return 'config.json is not valid JSON: ' + err.message;
  }
  if (!isPlainObject(cfg)) return 'config.json must hold an object';
  if (typeof cfg.tenant !== 'string' || cfg.tenant === '') return 'config.json: tenant must be a non-empty string';
  // The identity must match the directory: a mismatch means the host provisioned the wrong files.
  if (cfg.name !== name) return 'config.json: name does not match the requested function';
  if (cfg.version !== version) return 'config.json: version does not match the requested version';
  for (const field of ['secrets', 'meta', 'dependencies']) {
    if (cfg[field] !== undefined && cfg[field] !== null && !isPlainObject(cfg[field])) {
      return 'config.json: ' + field + ' must be an object';
    }
  }
  return {
    tenant: cfg.tenant,
    name: cfg.name,
    version: cfg.version,
    secrets: cfg.secrets || {},
    meta: cfg.meta || {},
    dependencies: cfg.dependencies || {},
  };
}

// Compiles and runs the module once. The wrapper is a real function body (vm.compileFunction, not string
// concatenation), so a top-level `return` is legal, line/column numbers match the file, and the source text, comments
// included, is what Function.prototype.toString reports.
function compile(code, filename, dependencies) {
  if (code.charCodeAt(0) === 0xfeff) code = code.slice(1);

  const options = { filename };
  // Lets function code use import() (e.g. of ESM-only packages) with the normal module loader, where supported.
  if (vm.constants && vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER) {
    options.importModuleDynamically = vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER;
  }

  let wrapper;
  try {
    wrapper = vm.compileFunction(code, WRAPPER_PARAMS, options);
  } catch (err) {
    return compileFailure(err, filename);
  }

  const dirname = path.dirname(filename);
  // createRequire resolves relative to the function file, so require() walks the version's own node_modules.
  const requireFn = explainVersionedRequire(Module.createRequire(filename), dependencies);
  const mod = new Module(filename, null);
  mod.filename = filename;
  mod.paths = typeof Module._nodeModulePaths === 'function' ? Module._nodeModulePaths(dirname) : [];
  mod.require = requireFn;

  let returned;
  try {
    returned = wrapper.call(mod.exports, mod.exports, requireFn, mod, filename, dirname);
  } catch (err) {
    // A throw while running top-level code (e.g. a failing require) is a load failure, like a syntax error.
    return failure(400, 'compiler', errorBody(400, 'Compilation failed: ' + errorMessage(err), err));
  }
  mod.loaded = true;
  return { ok: true, fn: returned !== undefined ? returned : mod.exports };
}

// ES module code compiled to CommonJS ('use latest' with `export default`, by Wharf at deploy or by Babel) exports
// {__esModule: true, default: fn}; its default export is the function, as Babel's interop reads it.
function exportedFunction(value) {
  if (typeof value === 'function' || value === null || typeof value !== 'object') return value;
  try {
    if (value.__esModule === true && typeof value.default === 'function') return value.default;
  } catch (err) {
    // A hostile getter: not a function then.
  }
  return value;
}

// require('name@1.2.3') finds the node_modules link of that exact declared version (handler/provision.go). When the
// function declares another version, or none, Node's "Cannot find module" becomes a sentence that says so.
const VERSIONED_RE = /^((?:@[^/@]+\/)?[^/@]+)@([^/]+)(\/.*)?$/;

function explainVersionedRequire(requireFn, dependencies) {
  const wrapped = function require(id) {
    try {
      return requireFn(id);
    } catch (err) {
      throw versionedRequireError(err, id, dependencies);
    }
  };
  // Everything else a module's require carries stays as Node made it.
  for (const key of ['resolve', 'cache', 'main', 'extensions']) wrapped[key] = requireFn[key];
  return wrapped;
}

function versionedRequireError(err, id, dependencies) {
  const m = typeof id === 'string' ? VERSIONED_RE.exec(id) : null;
  if (!m || !err || err.code !== 'MODULE_NOT_FOUND' || dependencies[m[1]] === m[2]) return err;
  const declared = Object.prototype.hasOwnProperty.call(dependencies, m[1]) ? dependencies[m[1]] : undefined;
  const e = new Error('Cannot find module \'' + id + '\': ' + (declared === undefined
    ? 'the function does not declare ' + m[1] + ' as a dependency'
    : 'the function declares ' + m[1] + '@' + declared + ', not ' + m[2]) +
    '; require(\'name@version\') loads only a version declared in the function\'s dependencies.');
  e.code = 'MODULE_NOT_FOUND';
  return e;
}

function compileFailure(err, filename) {
  const body = { code: 400, error: 'Compilation failed: ' + errorMessage(err), details: safeString(err) };
  const pos = syntaxErrorPosition(err, filename);
  if (pos) {
    body.details += ' (line ' + pos.line + (pos.column ? ', column ' + pos.column : '') + ')';
    body.line = pos.line;
    if (pos.column) body.column = pos.column;
  }
  return failure(400, 'compiler', body);
}

// V8 does not expose where a SyntaxError is; Node decorates the stack with "<file>:<line>\n<source>\n<caret>".
function syntaxErrorPosition(err, filename) {
  const stack = err && typeof err.stack === 'string' ? err.stack : '';
  if (!stack.startsWith(filename + ':')) return null;
  const lines = stack.split('\n');
  const line = Number(lines[0].slice(filename.length + 1));
  if (!Number.isInteger(line) || line < 1) return null;
  const caret = lines[2] || '';
  const column = /^[ \t]*\^+\s*$/.test(caret) ? caret.indexOf('^') + 1 : 0;
  return { line, column };
}

// ---------------------------------------------------------------------------------------------------------------------
// Requests

// Every function request not yet answered (or abandoned), so a crash can answer all of them.
const inflight = new Set();
let crashing = false;
let stopping = false;

function handleRequest(req, res) {
  const route = req[kRoute];
  if (route === undefined) return handleControl(req, res);

  if (crashing || stopping) {
    return sendJSON(res, 503, 'proxy', { code: 503, error: 'The container is shutting down.' }, { connection: 'close' });
  }
  // <name>@<version>: names never contain '@', and a repeated header ("a@1, a@1") fails the version's test.
  const at = route.indexOf('@');
  const functionName = at > 0 ? route.slice(0, at) : '';
  const versionText = at > 0 ? route.slice(at + 1) : '';
  if (!NAME_RE.test(functionName) || !VERSION_RE.test(versionText)) {
    return sendJSON(res, 400, 'proxy', { code: 400, error: 'Invalid function name or version.' });
  }

  const requestId = req.headers['x-request-id'];
  const id = typeof requestId === 'string' && requestId !== '' ? requestId : crypto.randomUUID();
  const inv = {
    req,
    res,
    answered: false,
    ownsResponse: false, // (ctx, req, res) code was given res: it may have set headers of its own
    unread: false, // a callback form's request without a body, left unread (see leaveUnread)
    id,
    // The log context: everything the request causes, loading included, runs in it, so console output is tagged.
    store: { fn: functionName, rid: id },
  };
  inflight.add(inv);
  res[kInvocation] = inv;
  // One shared listener, not a closure and a once() wrapper per request: this is on every request's path.
  res.on('close', onResponseClose);
  logContext.run(inv.store, dispatch, inv, functionName, Number(versionText));
}

function onResponseClose() {
  const inv = this[kInvocation];
  if (inv.unread) releaseUnread(inv.req);
  inflight.delete(inv);
  if (stopping && !crashing && inflight.size === 0) process.exit(0);
}

function dispatch(inv, functionName, version) {
  const entry = loaded.get(cacheKey(functionName, version));
  if (entry) return run(entry, inv);

  getFunction(functionName, version).then((result) => {
    if (!result.ok) return answer(inv, result.status, result.source, result.body);
    run(result, inv);
  }).catch((err) => {
    log('runner: failed to load ' + functionName + '@' + version, err);
    answer(inv, 500, 'proxy', { code: 500, error: 'Function could not be loaded.', details: safeString(err) });
  });
}

function handleControl(req, res) {
  const pathname = req.url.split('?', 1)[0];
  if (pathname !== '/_wharf/ready') {
    return sendJSON(res, 404, 'proxy', { code: 404, error: 'Not found.' });
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return sendJSON(res, 405, 'proxy', { code: 405, error: 'Method not allowed.' }, { allow: 'GET, HEAD' });
  }
  if (crashing || stopping || warming) return sendJSON(res, 503, 'proxy', { ok: false });
  return sendJSON(res, 200, 'proxy', { ok: true });
}

// The host's routing header (x-wharf-route) is taken out of the header list as node's parser hands it to the request,
// before req.headers, req.headersDistinct or req.rawHeaders can be built from it: no code ever sees it, and nothing
// has to be deleted or rebuilt per request. Any other x-wharf-* header is dropped the same way (the host never
// forwards a client's); in trailers too. A repeated routing header is joined like any repeated header ("a, b"), which
// the checks in handleRequest then refuse. One header, not one per field: each costs every request some CPU.
const kRoute = Symbol('wharf.route');
const kLogStore = Symbol('wharf.logStore');
const kInvocation = Symbol('wharf.invocation');

class RunnerRequest extends http.IncomingMessage {
  constructor(socket) {
    super(socket);
    this[kRoute] = undefined;
    this[kLogStore] = undefined;
  }

  _addHeaderLines(headers, n) {
    let kept = headers;
    let keptCount = n;
    for (let i = 0; i < n; i += 2) {
      const name = headers[i];
      if (isWharfHeader(name)) {
        if (kept === headers) kept = headers.slice(0, i);
        keptCount -= 2;
        if (!this.complete) this.takeRouting(name.toLowerCase(), headers[i + 1]);
      } else if (kept !== headers) {
        kept.push(name, headers[i + 1]);
      }
    }
    super._addHeaderLines(kept, keptCount);
  }

  takeRouting(name, value) {
    if (name === 'x-wharf-route') this[kRoute] = this[kRoute] === undefined ? value : this[kRoute] + ', ' + value;
  }
}

// The body's events ('data', 'end', ...) come from the socket, whose async context is not the request's. A
// (ctx, req, res) function's own listeners must still run in its request's log context, so its request gets this
// emit (set on the instance only then: for the callback forms, which never see req, it would be a context switch per
// event on every request for nothing; their body is read by the runner, which enters the context itself).
const incomingEmit = http.IncomingMessage.prototype.emit;
function emitInLogContext(...args) {
  const store = this[kLogStore];
  if (logContext.getStore() === store) return Reflect.apply(incomingEmit, this, args);
  return logContext.run(store, () => Reflect.apply(incomingEmit, this, args));
}

class RunnerResponse extends http.ServerResponse {
  constructor(req, options) {
    super(req, options);
    this[kInvocation] = undefined; // set in the constructor so every response has one shape
  }
}

// 'x-wharf-' in any case; the first two character tests skip almost every other header cheaply.
function isWharfHeader(name) {
  return name.length > 8 && (name.charCodeAt(0) | 0x20) === 0x78 && name.charCodeAt(1) === 0x2d &&
    name.slice(0, 8).toLowerCase() === 'x-wharf-';
}

function run(entry, inv) {
  // A crash, or a client that gave up, may have settled the request while its function was loading.
  if (inv.answered || inv.res.destroyed) return;
  if (entry.form === 3) return runRequestResponse(entry, inv);
  // The common webhook GET has no body: no stream events to wait for (a tick and four listeners saved), and its
  // body_raw is the empty text a read would give.
  if (hasNoBody(inv.req)) {
    leaveUnread(inv);
    return runCallback(entry, inv, '');
  }
  readBody(inv.req, (err, raw) => {
    // The client went away while sending the body: there is nobody to answer.
    if (err || inv.answered || inv.res.destroyed) return;
    // Called from the body's last event, in the socket's async context: re-enter the request's.
    logContext.run(inv.store, runCallback, entry, inv, raw);
  });
}

// Once a response is done node "dumps" a request its handler never read: resume, read, 'end', destroy, 'close', a
// chain of ticks, each an async resource the log context hooks; about 12% of the runner's CPU on a trivial function. A
// request without a body has nothing left to read, and the callback forms never see req, so nothing can wait for
// those events: it is marked as being read (the flag node's own read() sets), and once its response has closed, the
// parser's reference to it is dropped, as the dump's 'end' would have done, so it is not kept (and copied by every
// young-generation collection) until the connection's next request. Both are node internals, guarded: were either
// gone, node would dump and release as before.
function leaveUnread(inv) {
  inv.req._consuming = true;
  inv.unread = true;
}

function releaseUnread(req) {
  const parser = req.socket && req.socket.parser;
  if (parser && parser.incoming === req) parser.incoming = null;
}

// HTTP/1.1: a request has a body only with Transfer-Encoding or a non-zero Content-Length (node's parser has
// already checked both).
function hasNoBody(req) {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0');
}

function readBody(req, done) {
  const chunks = [];
  let finished = false;
  const finish = (err, value) => {
    if (finished) return;
    finished = true;
    done(err, value);
  };
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => finish(null, Buffer.concat(chunks).toString('utf8')));
  req.on('error', (err) => finish(err));
  req.on('close', () => finish(new Error('request closed before its body was read')));
}

function runCallback(entry, inv, raw) {
  const ctx = createContext(entry, inv, raw);
  const cb = function webtaskCallback(err, result) {
    if (inv.answered) return; // a second callback is ignored
    respondFromCallback(inv, err, result);
  };
  let returned;
  try {
    returned = entry.form === 1 ? entry.fn(cb) : entry.fn(ctx, cb);
  } catch (err) {
    return failCallback(inv, MSG.syncThrow, err);
  }
  onRejection(returned, (err) => failCallback(inv, MSG.asyncThrow, err));
}

function failCallback(inv, message, err) {
  if (inv.answered) {
    // The client already has its answer; the late failure is only worth a log line.
    log('function failed after answering (request ' + inv.id + ')', err);
    return;
  }
  answer(inv, 500, 'webtask', errorBody(500, message, err));
}

function runRequestResponse(entry, inv) {
  const { req, res } = inv;
  const ctx = createContext(entry, inv, undefined);
  inv.ownsResponse = true;
  req[kLogStore] = inv.store;
  req.emit = emitInLogContext;
  req.x_wt = { container: entry.config.tenant, jtn: entry.name, url_format: 1 };
  req.webtaskContext = ctx;
  res.setHeader('x-wt-response-source', 'webtask');
  // Without a listener, misuse such as a write after end() would be an uncaught exception and take every other
  // request of the container down with it.
  res.on('error', (err) => log('response error (request ' + inv.id + ')', err));
  let returned;
  try {
    returned = entry.fn(ctx, req, res);
  } catch (err) {
    return failOwnedResponse(inv, MSG.syncThrow, err);
  }
  onRejection(returned, (err) => failOwnedResponse(inv, MSG.asyncThrow, err));
}

// The (ctx, req, res) code owns the response; the runner answers for it only if nothing was sent yet.
function failOwnedResponse(inv, message, err) {
  if (crashing) return;
  const res = inv.res;
  if (res.headersSent || res.writableEnded) {
    log('function failed after starting its response (request ' + inv.id + ')', err);
    if (!res.writableEnded) res.destroy();
    return;
  }
  answer(inv, 500, 'webtask', errorBody(500, message, err));
}

// A rejection of the promise an async function returns belongs to its own request, so it fails that request only
// instead of surfacing as an unhandled rejection that would take the whole container down.
function onRejection(returned, handler) {
  try {
    if (returned !== null && (typeof returned === 'object' || typeof returned === 'function') &&
        typeof returned.then === 'function') {
      returned.then(undefined, handler);
    }
  } catch (err) {
    // A hostile thenable; not crashing is all that can be done.
  }
}

function respondFromCallback(inv, err, result) {
  try {
    if (err) {
      const status = errorStatus(err);
      return answer(inv, status, 'webtask', errorBody(status, MSG.cbError, err));
    }
    let json;
    if (!result) {
      json = '{}';
    } else {
      try {
        json = JSON.stringify(result);
      } catch (e) {
        return answer(inv, 400, 'webtask', errorBody(400, MSG.serialize, e));
      }
      // Functions, symbols and undefined-returning toJSON serialise to nothing: not a JSON document either.
      if (typeof json !== 'string') {
        return answer(inv, 400, 'webtask', { code: 400, error: MSG.serialize, details: 'The result has no JSON representation.' });
      }
    }
    answer(inv, 200, 'webtask', json);
  } catch (e) {
    // Something in the result or error (a throwing getter, say) defeated the code above.
    log('runner: could not build the response (request ' + inv.id + ')', e);
    answer(inv, 500, 'proxy', { code: 500, error: 'The runner could not build the response.', details: safeString(e) });
  }
}

function errorStatus(err) {
  let code = (typeof err === 'object' || typeof err === 'function') ? err.statusCode : undefined;
  if (typeof code === 'string' && /^[0-9]{3}$/.test(code)) code = Number(code);
  return Number.isInteger(code) && code >= 200 && code <= 599 ? code : 400;
}

function answer(inv, status, source, payload, extraHeaders) {
  inv.answered = true;
  if (inv.ownsResponse) clearHeaders(inv.res);
  sendJSON(inv.res, status, source, payload, extraHeaders);
}

// ---------------------------------------------------------------------------------------------------------------------
// context

function createContext(entry, inv, raw) {
  const { req } = inv;
  const config = entry.config;

  const query = parseQuery(req.url);
  // Per-request copies: requests are independent even if code mutates what it is given.
  const secrets = copyOf(config.secrets);
  const meta = copyOf(config.meta);

  const ctx = {
    id: inv.id,
    query,
    headers: req.headers,
    secrets,
    meta,
    data: {},
    body: undefined,
    body_raw: undefined,
    storage: createStorage(entry.name),
  };

  if (raw !== undefined) {
    ctx.body_raw = raw;
    ctx.body = parseBody(req.headers['content-type'], raw);
  }

  const data = ctx.data;
  for (const key of Object.keys(query)) defineValue(data, key, query[key]);
  for (const key of Object.keys(secrets)) defineValue(data, key, secrets[key]);
  const body = ctx.body;
  if (body !== null && typeof body === 'object' && !Array.isArray(body)) {
    for (const key of Object.keys(body)) {
      if (!Object.prototype.hasOwnProperty.call(data, key) || data[key] === undefined) defineValue(data, key, body[key]);
    }
  }
  return ctx;
}

// A deep copy; most functions have no secrets or metadata, and structuredClone of an empty object is not free.
function copyOf(obj) {
  for (const _ in obj) return structuredClone(obj); // eslint-disable-line no-unused-vars
  return {};
}

function parseQuery(url) {
  const q = url.indexOf('?');
  if (q < 0) return {};
  const parsed = querystring.parse(url.slice(q + 1));
  // querystring returns a null-prototype object; code expects a plain one (hasOwnProperty and friends).
  const query = {};
  for (const key of Object.keys(parsed)) {
    if (key === 'key' || key.startsWith('webtask_')) continue;
    defineValue(query, key, parsed[key]);
  }
  return query;
}

function parseBody(contentType, raw) {
  const type = typeof contentType === 'string' ? contentType.toLowerCase() : '';
  try {
    if (type.includes('application/json')) return JSON.parse(raw);
    if (type.includes('application/x-www-form-urlencoded')) {
      const parsed = querystring.parse(raw, undefined, undefined, { maxKeys: 0 });
      const body = {};
      for (const key of Object.keys(parsed)) defineValue(body, key, parsed[key]);
      return body;
    }
  } catch (err) {
    // Unparseable bodies are undefined by contract; body_raw still has the text.
  }
  return undefined;
}

// Defines an own, ordinary property even for the key "__proto__", which plain assignment would treat as a prototype
// change. Every other key of a plain object takes plain assignment (an own data property; Object.defineProperty
// costs several times more, on every query key of every request).
function defineValue(obj, key, value) {
  if (key === '__proto__') {
    Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
  } else {
    obj[key] = value;
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Storage (ctx.storage)
//
// One JSON document per function, kept by the node in the store and shared by every container and node of the tenant.
// The node serves it on $WHARF_APP_DIR/storage.sock, a socket only this tenant's container sees:
//   GET /v1/functions/<name>/storage -> 200 {"rev", "data"} ("data" absent: nothing stored)
//   PUT /v1/functions/<name>/storage {"rev", "force", "data"} -> 200 {"rev"} | 409 {"rev", "data"} (what is stored)
// Conflicts are decided by the node against the revision this request last read (a get, a 409 or its own set).

const STORAGE_SOCKET = path.join(APP_DIR, 'storage.sock');
const STORAGE_MAX_BYTES = 500 * 1024;
const STORAGE_TIMEOUT_MS = 30 * 1000;
const storageAgent = new http.Agent({ keepAlive: true, maxSockets: 8 });

function createStorage(name) {
  let lastRev = null; // null: nothing read in this request yet
  return {
    get(options, cb) {
      if (typeof options === 'function') cb = options;
      if (typeof cb !== 'function') throw new TypeError('storage.get needs a callback.');
      storageCall('GET', name, undefined, (err, status, body) => {
        if (err) return cb(err);
        if (status !== 200) return cb(storageError(status, body));
        lastRev = body.rev;
        cb(null, body.data);
      });
    },
    set(data, options, cb) {
      if (typeof options === 'function') {
        cb = options;
        options = undefined;
      }
      if (cb === undefined) cb = () => {};
      if (typeof cb !== 'function') throw new TypeError('storage.set needs a callback.');
      const force = !!(options !== null && typeof options === 'object' && options.force);
      const fail = (message, code) => {
        const err = new Error(message);
        if (code) err.code = code;
        process.nextTick(cb, err);
      };
      if (!force && lastRev === null) {
        return fail('storage.set without {force: 1} must follow a storage.get in the same request.', 400);
      }
      let json = 'null';
      if (data !== undefined && data !== null) {
        try {
          json = JSON.stringify(data);
        } catch (err) {
          return fail('The storage data cannot be serialized to JSON: ' + errorMessage(err), 400);
        }
        if (typeof json !== 'string') return fail('The storage data has no JSON representation.', 400);
      }
      if (Buffer.byteLength(json) > STORAGE_MAX_BYTES) {
        return fail('The storage data is larger than 500 KB.', 413);
      }
      const body = '{"rev":' + (lastRev || 0) + ',"force":' + force + ',"data":' + json + '}';
      storageCall('PUT', name, body, (err, status, answer) => {
        if (err) return cb(err);
        if (status === 409) {
          lastRev = answer.rev; // the conflict counts as a read: set may be retried at once
          const conflict = new Error('Write conflict: the storage document changed since it was read.');
          conflict.code = 409;
          conflict.conflict = answer.data;
          return cb(conflict);
        }
        if (status !== 200) return cb(storageError(status, answer));
        lastRev = answer.rev;
        cb(null);
      });
    },
  };
}

// done(err, status, parsedBody) runs exactly once.
function storageCall(method, name, body, done) {
  let finished = false;
  const finish = (err, status, value) => {
    if (finished) return;
    finished = true;
    done(err, status, value);
  };
  const req = http.request({
    socketPath: STORAGE_SOCKET, agent: storageAgent, method, path: '/v1/functions/' + name + '/storage',
    headers: body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
  }, (res) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('error', (err) => finish(storageUnavailable(err)));
    res.on('end', () => {
      let value;
      try {
        value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch (err) {
        return finish(storageUnavailable(err));
      }
      finish(null, res.statusCode, value);
    });
  });
  req.setTimeout(STORAGE_TIMEOUT_MS, () => req.destroy(new Error('storage call timed out')));
  req.on('error', (err) => finish(storageUnavailable(err)));
  req.end(body);
}

function storageError(status, body) {
  const err = new Error(body && typeof body.error === 'string' ? body.error : 'Storage call failed.');
  err.code = status;
  return err;
}

function storageUnavailable(cause) {
  const err = new Error('Storage is unavailable: ' + errorMessage(cause));
  err.code = 503;
  return err;
}

// ---------------------------------------------------------------------------------------------------------------------
// Responses and errors

function sendJSON(res, status, source, payload, extraHeaders) {
  if (res.headersSent || res.writableEnded || res.destroyed) {
    // Too late for a clean answer; a truncated response is better than one that hangs.
    if (!res.writableEnded && !res.destroyed) res.destroy();
    return;
  }
  const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
  const headers = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-wt-response-source': source,
  };
  if (extraHeaders !== undefined) Object.assign(headers, extraHeaders);
  res.writeHead(status, headers);
  res.end(body);
}

// Headers a (ctx, req, res) function set before failing must not mix into the runner's answer. Only such responses
// can have any: the runner sets none before it answers.
function clearHeaders(res) {
  for (const name of res.getHeaderNames()) res.removeHeader(name);
}

// {code, error, details, name, message, stack} as webtask produced it; a string error carries only details.
function errorBody(status, error, err) {
  const body = { code: status, error, details: safeString(err) };
  if (err !== null && (typeof err === 'object' || typeof err === 'function')) {
    for (const field of ['name', 'message', 'stack']) {
      let value;
      try {
        value = err[field];
      } catch (e) {
        continue;
      }
      if (value !== undefined && value !== null) body[field] = typeof value === 'string' ? value : safeString(value);
    }
  }
  return body;
}

function errorMessage(err) {
  try {
    if (err !== null && typeof err === 'object' && typeof err.message === 'string') return err.message;
  } catch (e) {
    // fall through
  }
  return safeString(err);
}

function safeString(value) {
  try {
    return String(value);
  } catch (err) {
    return Object.prototype.toString.call(value);
  }
}

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

// One line (plus a stack) on stderr; stdout belongs to the functions' console.log.
function log(message, err) {
  let text = '[wharf-runner] ' + message;
  if (arguments.length > 1) {
    let detail;
    try {
      detail = err && typeof err.stack === 'string' ? err.stack : safeString(err);
    } catch (e) {
      detail = safeString(err);
    }
    text += ': ' + detail;
  }
  try {
    process.stderr.write(text + '\n');
  } catch (e) {
    // stderr is gone; nothing left to tell.
  }
}

function parsePort(value, fallback) {
  if (value === undefined || value === '') return fallback;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    log('invalid WHARF_PORT ' + JSON.stringify(value));
    process.exit(2);
  }
  return port;
}

// ---------------------------------------------------------------------------------------------------------------------
// Function output

const logContext = new AsyncLocalStorage();
const LOG_RATE = parseLogRate(process.env.WHARF_LOG_RATE, 100);
const LOG_BURST = 2 * LOG_RATE;
const LOG_MAX_MESSAGE = 8192; // characters; the JSON line stays below the engine's 16 KiB line split
const LOG_LEVELS = { log: 'log', info: 'info', debug: 'debug', warn: 'warn', error: 'error' };

// Captured before any function code runs, so code replacing process.stdout.write only loses its own tagged lines.
const stdoutWrite = process.stdout.write.bind(process.stdout);
let logTokens = LOG_BURST;
let logRefilled = Date.now();
let logDropped = 0;
let logNoticeTimer = null;

function installConsole() {
  for (const method of Object.keys(LOG_LEVELS)) {
    const level = LOG_LEVELS[method];
    console[method] = function wharfConsole(...args) {
      emitLog(level, formatArgs(args));
    };
  }
  console.trace = function wharfTrace(...args) {
    const err = new Error(formatArgs(args));
    err.name = 'Trace';
    Error.captureStackTrace(err, wharfTrace);
    emitLog('error', safeString(err.stack));
  };
  console.dir = function wharfDir(obj, options) {
    let text;
    try {
      text = util.inspect(obj, Object.assign({ customInspect: false }, options));
    } catch (err) {
      text = '[uninspectable value: ' + errorMessage(err) + ']';
    }
    emitLog('log', text);
  };
}

// util.format is what console.log uses; hostile values (throwing getters, inspect hooks) must not break the caller.
function formatArgs(args) {
  try {
    return util.format(...args);
  } catch (err) {
    return '[unformattable log arguments: ' + errorMessage(err) + ']';
  }
}

function emitLog(level, message) {
  if (warming) return; // the warm-up's own functions never log; nothing of it belongs to a tenant
  if (!takeLogToken()) {
    logDropped++;
    if (!logNoticeTimer) {
      logNoticeTimer = setTimeout(flushLogNotice, 1000);
      logNoticeTimer.unref();
    }
    return;
  }
  const store = logContext.getStore();
  writeLogRecord(level, store ? store.fn : '', store ? store.rid : '', message);
}

function writeLogRecord(level, fn, rid, message) {
  let msg = typeof message === 'string' ? message : safeString(message);
  if (msg.length > LOG_MAX_MESSAGE) {
    msg = msg.slice(0, LOG_MAX_MESSAGE) + '... [' + (msg.length - LOG_MAX_MESSAGE) + ' more characters cut]';
  }
  const line = JSON.stringify({ t: new Date().toISOString(), lvl: level, fn, rid, msg }) + '\n';
  try {
    stdoutWrite(line);
  } catch (e) {
    // stdout is gone; the line is lost, the request is not.
  }
}

function flushLogNotice() {
  logNoticeTimer = null;
  if (logDropped === 0) return;
  const n = logDropped;
  logDropped = 0;
  writeLogRecord('system', '', '', n + ' log line(s) dropped: more than ' + LOG_RATE + ' lines per second.');
}

// A token bucket: LOG_RATE lines per second on average, LOG_BURST at once.
function takeLogToken() {
  const now = Date.now();
  logTokens = Math.min(LOG_BURST, logTokens + ((now - logRefilled) * LOG_RATE) / 1000);
  logRefilled = now;
  if (logTokens < 1) return false;
  logTokens -= 1;
  return true;
}

function parseLogRate(value, fallback) {
  if (value === undefined || value === '') return fallback;
  const rate = Number(value);
  return Number.isInteger(rate) && rate > 0 && rate <= 1000000 ? rate : fallback;
}

installConsole();

// ---------------------------------------------------------------------------------------------------------------------
// Crashes and shutdown

// An uncaught exception or unhandled rejection leaves the shared process in an unknown state and cannot be traced
// to one request: answer every in-flight request, then exit so the host replaces the container.
function onFatal(err, origin) {
  log('unhandled asynchronous exception (' + origin + ')', err);
  if (crashing) return;
  crashing = true;

  setTimeout(() => process.exit(CRASH_EXIT_CODE), CRASH_HARD_DEADLINE_MS);
  let body;
  try {
    body = errorBody(500, MSG.asyncThrow, err);
  } catch (e) {
    body = { code: 500, error: MSG.asyncThrow };
  }

  try {
    server.close();
  } catch (e) {
    // already closed
  }

  const responses = [];
  for (const inv of inflight) {
    const res = inv.res;
    try {
      answer(inv, 500, 'webtask', body, { connection: 'close' }); // marks it answered before anything can throw
    } catch (e) {
      res.destroy();
    }
    if (!res.writableFinished && !res.destroyed) {
      responses.push(new Promise((resolve) => {
        res.once('finish', resolve);
        res.once('close', resolve);
      }));
    }
  }

  Promise.all(responses).then(() => {
    // Let the kernel deliver what was written before the process (and its sockets) go away.
    try {
      server.closeIdleConnections();
    } catch (e) {
      // older node
    }
    const waitSockets = () => {
      if (sockets.size === 0) return process.exit(CRASH_EXIT_CODE);
      setTimeout(waitSockets, 10);
    };
    setTimeout(() => process.exit(CRASH_EXIT_CODE), CRASH_SOCKET_GRACE_MS);
    waitSockets();
  }).catch(() => process.exit(CRASH_EXIT_CODE));
}

function onSignal(signal) {
  if (stopping || crashing) return;
  stopping = true;
  log('received ' + signal + ', stopping after ' + inflight.size + ' in-flight request(s)');
  server.close();
  if (inflight.size === 0) process.exit(0);
}

// ---------------------------------------------------------------------------------------------------------------------
// Server

const sockets = new Set();

const server = http.createServer({
  IncomingMessage: RunnerRequest,
  ServerResponse: RunnerResponse,
  keepAlive: true,
  maxHeaderSize: MAX_HEADER_SIZE,
  headersTimeout: HEADERS_TIMEOUT_MS,
  requestTimeout: REQUEST_TIMEOUT_MS,
}, handleRequest);
// No keep-alive timeout: the host's pool closes idle connections itself (after 55 s, and beyond its per-container
// cap), so a request never meets a connection the runner is closing; and a timeout would be re-armed and cleared on
// every request (two socket timers, each an async resource), about 5% of the runner's CPU on a trivial function.
server.keepAliveTimeout = 0;

server.on('connection', (socket) => {
  sockets.add(socket);
  socket.once('close', () => sockets.delete(socket));
});

// Malformed requests never reach handleRequest; still answer them in the runner's JSON shape.
server.on('clientError', (err, socket) => {
  if (!socket.writable || (err && err.code === 'ECONNRESET')) return socket.destroy();
  let status = 400;
  if (err && err.code === 'HPE_HEADER_OVERFLOW') status = 431;
  else if (err && err.code === 'ERR_HTTP_REQUEST_TIMEOUT') status = 408;
  const body = JSON.stringify({ code: status, error: http.STATUS_CODES[status] + '.' });
  socket.end('HTTP/1.1 ' + status + ' ' + http.STATUS_CODES[status] + '\r\n' +
    'content-type: application/json\r\n' +
    'content-length: ' + Buffer.byteLength(body) + '\r\n' +
    'x-wt-response-source: proxy\r\n' +
    'connection: close\r\n\r\n' + body);
});

server.on('error', (err) => {
  log('server error', err);
  process.exit(1);
});

process.on('uncaughtException', (err, origin) => onFatal(err, origin || 'uncaughtException'));
process.on('unhandledRejection', (reason) => onFatal(reason, 'unhandledRejection'));
process.on('SIGTERM', () => onSignal('SIGTERM'));
process.on('SIGINT', () => onSignal('SIGINT'));

// ---------------------------------------------------------------------------------------------------------------------
// Warm-up

// A fresh process runs its first request about 10 ms slower than later ones (V8 compiles the runner's paths and
// vm's compiler lazily). The container is pre-warmed so that its tenant's first request is not the first request:
// before the ready probe says yes, the runner serves itself a few requests over loopback, through the very code
// paths a tenant's request takes, for functions in a private temporary tree. No other request can arrive meanwhile:
// the host routes to a container only after the probe answered 200.
// Two versions of each, twice: every path (load, cached, each form, a module require) runs a few times. Measured on
// the host: the first request of a new function took 11.5 ms with no warm-up, 4.2 ms after this one, 3.7 ms after
// 4 versions x 5 rounds, which cost 140 ms more CPU per container: a burst of new tenants waits on container creation.
const WARMUP_VERSIONS = 2;
const WARMUP_REQUESTS = 2;
const WARMUP_CODE = {
  one: 'module.exports = function (cb) { cb(null, "ok") }',
  two: '// comment\nmodule.exports = function (ctx, cb) { cb(null, { q: ctx.query, b: ctx.body, d: ctx.data }) }',
  three: 'module.exports = function (ctx, req, res) { let n = 0; req.on("data", (d) => { n += d.length });' +
    ' req.on("end", () => { res.writeHead(200, { "content-type": "text/plain" }); res.end(String(n)) }) }',
  // Requires a package through a node_modules symlink, as functions with dependencies do (/modules): warms Node's
  // package resolution, which otherwise costs a function's first require() a few ms.
  four: 'const w = require("wharf-warm"); module.exports = function (cb) { cb(null, w("ok")) }',
};

// writeWarmPackage puts a package outside vdir and links vdir/node_modules/wharf-warm to it.
function writeWarmPackage(root, vdir, v) {
  const pkg = path.join(root, 'modules', String(v), 'node_modules', 'wharf-warm');
  fs.mkdirSync(path.join(pkg, 'lib'), { recursive: true });
  fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'wharf-warm', main: 'lib/index.js' }));
  fs.writeFileSync(path.join(pkg, 'lib', 'index.js'), 'const f = require("./format"); module.exports = (s) => f(s)');
  fs.writeFileSync(path.join(pkg, 'lib', 'format.js'), 'module.exports = (s) => require("util").format("%s", s)');
  fs.mkdirSync(path.join(vdir, 'node_modules'));
  fs.symlinkSync(pkg, path.join(vdir, 'node_modules', 'wharf-warm'));
}

function warmRequest(name, version) {
  return new Promise((resolve) => {
    const body = JSON.stringify({ warm: true, n: version });
    const req = http.request({
      host: '127.0.0.1', port: server.address().port, method: 'POST', path: '/api/run/wharf/' + name + '?a=1&b=2',
      headers: {
        'x-wharf-route': name + '@' + version, 'x-request-id': 'warmup',
        'content-type': 'application/json', 'content-length': Buffer.byteLength(body),
      },
    }, (res) => {
      res.resume();
      res.on('end', resolve);
      res.on('error', resolve);
    });
    req.on('error', resolve);
    req.end(body);
  });
}

async function warmUp() {
  const start = process.hrtime.bigint();
  let root;
  try {
    root = fs.mkdtempSync(path.join(require('os').tmpdir(), 'wharf-warmup-'));
    const dir = path.join(root, 'functions');
    for (const name of Object.keys(WARMUP_CODE)) {
      for (let v = 1; v <= WARMUP_VERSIONS; v++) {
        const vdir = path.join(dir, name, String(v));
        fs.mkdirSync(vdir, { recursive: true });
        fs.writeFileSync(path.join(vdir, 'function.js'), WARMUP_CODE[name]);
        fs.writeFileSync(path.join(vdir, 'config.json'),
          JSON.stringify({ tenant: 'wharf', name, version: v, timeout_ms: 1000, secrets: { S: 's' }, meta: {} }));
        if (name === 'four') writeWarmPackage(root, vdir, v);
      }
    }
    functionsDir = dir;
    for (let v = 1; v <= WARMUP_VERSIONS; v++) {
      for (let i = 0; i < WARMUP_REQUESTS; i++) {
        await Promise.all(Object.keys(WARMUP_CODE).map((name) => warmRequest(name, v)));
      }
    }
  } catch (err) {
    // One line, like every line written before the runner is ready: the host recognises and skips them.
    log('warm-up failed (serving anyway): ' + errorMessage(err).replace(/\s+/g, ' '));
  } finally {
    functionsDir = FUNCTIONS_DIR;
    loaded.clear();
    loading.clear();
    if (root) {
      for (const key of Object.keys(require.cache)) if (key.startsWith(root)) delete require.cache[key];
      fs.rmSync(root, { recursive: true, force: true });
    }
    // Written before the probe can say ready: the host follows a container's output for its tenant from the moment
    // it takes the ready container, so the runner's start never shows in a tenant's log.
    log('warmed up in ' + Number((process.hrtime.bigint() - start) / 1000000n) + ' ms');
    warming = false;
  }
}

server.listen(PORT, HOST, () => {
  const address = server.address();
  log('listening on ' + address.address + ':' + address.port + ', functions in ' + FUNCTIONS_DIR);
  warmUp();
});
