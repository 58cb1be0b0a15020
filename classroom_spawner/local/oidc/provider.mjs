#!/usr/bin/env node
// A real, local OpenID Connect provider for classroom-spawner's tests and demo.
//
//   node provider.mjs CONFIG.json
//
// Built on the npm package `oidc-provider` (panva; a certified OpenID Connect
// implementation). This file only adds what a test/demo identity provider needs
// on top of it:
//
//   * accounts from the config file (username + password + arbitrary claims,
//     including a non-standard `groups` list), checked by our own HTML login form;
//   * automatic consent (no consent screen): the client gets whatever it asked for;
//   * an in-memory storage adapter we can inspect, so that all of a user's
//     sessions, grants and tokens can be revoked at once;
//   * an admin API, protected by a shared secret, to add/replace/remove accounts
//     and clients and to revoke a user's tokens while the provider runs.
//
// It is a test and demo tool ONLY: plain http on the loopback interface,
// passwords in clear text, keys generated at every start and nothing persisted.
//
// Output: logs go to stderr. Exactly one line is written to stdout, once the
// server listens:  READY <issuer>
//
// The config file (JSON) — every key optional except as noted:
//   issuer          "http://127.0.0.1:PORT" (default: derived from host + port)
//   host            interface to listen on (default 127.0.0.1)
//   port            port (default 0 = pick a free one; the READY line tells which)
//   title           provider name shown on its pages ("Classroom demo university")
//   hint            plain text shown under the login form (e.g. demo accounts)
//   admin_secret    enables /admin/* (requests need "Authorization: Bearer SECRET")
//   require_pkce    require PKCE (S256) on every authorization request (default true)
//   rotate_refresh_tokens   issue a new refresh token on every refresh (default false)
//   ttl             seconds per artifact: AccessToken, AuthorizationCode, IdToken,
//                   RefreshToken, Interaction, Session, Grant
//   scope_claims    extra scope -> [claim, ...] mappings, merged with the defaults
//   clients         [{client_id, client_secret, redirect_uris, grant_types, ...}]
//                   (any OpenID Connect client metadata; defaults below)
//   accounts        [{username, password, sub?, claims: {name, email, groups, ...}}]
//   node_modules    directory holding oidc-provider (env CLASSROOM_NODE_MODULES wins)
//   exit_on_stdin_close   exit when stdin reaches EOF (the Python wrapper sets this,
//                   so the provider never outlives the process that started it)

import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// ---------------------------------------------------------------------------
// stdout carries only the READY line. oidc-provider prints its notices with
// console.info (stdout), so send console.log/info to stderr *before* loading it.
// ---------------------------------------------------------------------------
const log = (...args) => console.error(`[oidc ${new Date().toISOString()}]`, ...args);
console.log = log;
console.info = log;

if (process.argv.length < 3) {
  console.error('usage: node provider.mjs CONFIG.json');
  process.exit(2);
}
const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// Load oidc-provider from an explicit node_modules directory when one is given
// (the Python package may be installed far away from the repo's node_modules);
// otherwise let Node's normal resolution walk up from this file.
async function loadOidcProvider() {
  const dir = process.env.CLASSROOM_NODE_MODULES || config.node_modules;
  if (dir) {
    const require = createRequire(path.join(path.resolve(dir), 'noop.js'));
    return import(pathToFileURL(require.resolve('oidc-provider')).href);
  }
  return import('oidc-provider');
}
// oidc-provider 9 warns "Unsupported runtime. Use Node.js v22.x LTS" on Node 20
// (it only compares the LTS code name). Everything used here works on Node
// >= 20.19 (URL.parse, crypto.hash), and the test-suite exercises it, so the
// warning is replaced by a one-line note.
const { default: Provider } = await (async () => {
  const warn = console.warn;
  console.warn = (...args) => {
    if (String(args[0]).includes('Unsupported runtime')) {
      log(`note: Node ${process.version}; oidc-provider asks for Node >= 22 but works on >= 20.19`);
    } else {
      warn(...args);
    }
  };
  try {
    return await loadOidcProvider();
  } finally {
    console.warn = warn;
  }
})();

const TITLE = config.title || 'Classroom demo university';

// ---------------------------------------------------------------------------
// Accounts. Keyed by lower-cased username (logins are case-insensitive, like
// most real identity providers); `sub` defaults to the username as given.
// ---------------------------------------------------------------------------
const accounts = new Map(); // username.toLowerCase() -> {username, password, sub, claims}

function normalizeAccount(input, usernameOverride) {
  if (!input || typeof input !== 'object') throw new TypeError('an account must be a JSON object');
  const { username: rawUsername, password, sub, claims = {}, ...rest } = input;
  const username = usernameOverride ?? rawUsername;
  if (typeof username !== 'string' || !username) throw new TypeError('an account needs a "username" string');
  if (typeof password !== 'string') throw new TypeError(`account ${username}: "password" must be a string`);
  if (typeof claims !== 'object' || Array.isArray(claims)) throw new TypeError(`account ${username}: "claims" must be an object`);
  // top-level keys other than username/password/sub/claims are claims too
  const merged = { ...rest, ...claims };
  delete merged.sub;
  merged.preferred_username ??= username;
  return { username, password, sub: String(sub ?? username), claims: merged };
}

function putAccount(account) {
  const key = account.username.toLowerCase();
  for (const [otherKey, other] of accounts) {
    if (otherKey !== key && other.sub === account.sub) {
      throw new TypeError(`sub ${account.sub} already belongs to ${other.username}`);
    }
  }
  accounts.set(key, account);
  return account;
}

const accountByUsername = (username) => accounts.get(String(username).toLowerCase());
function accountBySub(sub) {
  for (const account of accounts.values()) if (account.sub === sub) return account;
  return undefined;
}
const publicAccount = ({ username, sub, claims }) => ({ username, sub, claims });

for (const acc of config.accounts ?? []) putAccount(normalizeAccount(acc));

// ---------------------------------------------------------------------------
// Which claims each scope releases. `groups` is released by the `groups` scope
// and also by `profile`, so clients that only ask for `openid profile` see it.
// ---------------------------------------------------------------------------
const scopeClaims = {
  openid: ['sub'],
  profile: [
    'name', 'family_name', 'given_name', 'middle_name', 'nickname', 'preferred_username',
    'profile', 'picture', 'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at',
    'groups',
  ],
  email: ['email', 'email_verified'],
  address: ['address'],
  phone: ['phone_number', 'phone_number_verified'],
  groups: ['groups'],
};
for (const [scope, claims] of Object.entries(config.scope_claims ?? {})) {
  scopeClaims[scope] = [...new Set([...(scopeClaims[scope] ?? []), ...claims])];
}
// Non-standard claims found in the configured accounts (e.g. "roles") would be
// dropped by oidc-provider unless some scope releases them: put them in profile.
{
  const known = new Set(Object.values(scopeClaims).flat());
  for (const account of accounts.values()) {
    for (const claim of Object.keys(account.claims)) {
      if (!known.has(claim)) {
        known.add(claim);
        scopeClaims.profile.push(claim);
        log(`claim "${claim}" is not mapped to a scope; releasing it with "profile"`);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Storage adapter: plain Maps with expiry. The library's bundled memory
// adapter is an LRU capped at 1000 entries (a few hundred logins would evict
// live sessions) and cannot be searched by account, which `revoke` needs.
// ---------------------------------------------------------------------------
const stores = new Map(); // model name -> Map(id -> {payload, expiresAt})
const storeFor = (model) => {
  if (!stores.has(model)) stores.set(model, new Map());
  return stores.get(model);
};
const alive = (entry) => entry && entry.expiresAt > Date.now();

class MapAdapter {
  constructor(model) {
    this.model = model;
    this.items = storeFor(model);
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    this.items.set(id, { payload: structuredClone(payload), expiresAt });
  }

  async find(id) {
    const entry = this.items.get(id);
    if (!alive(entry)) {
      this.items.delete(id);
      return undefined;
    }
    return structuredClone(entry.payload);
  }

  async #findBy(field, value) {
    for (const [id, entry] of this.items) {
      if (entry.payload[field] === value) return this.find(id);
    }
    return undefined;
  }

  findByUid(uid) { return this.#findBy('uid', uid); }

  findByUserCode(userCode) { return this.#findBy('userCode', userCode); }

  async consume(id) {
    const entry = this.items.get(id);
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    this.items.delete(id);
  }

  async revokeByGrantId(grantId) {
    for (const [id, entry] of this.items) {
      if (entry.payload.grantId === grantId) this.items.delete(id);
    }
  }
}

// drop expired entries now and then
setInterval(() => {
  for (const items of stores.values()) {
    for (const [id, entry] of items) if (!alive(entry)) items.delete(id);
  }
}, 60_000).unref();

// Revoke everything the provider holds for one subject: sessions (so the next
// authorization asks for the password again), grants, authorization codes,
// access and refresh tokens. Returns {Model: count}.
function revokeSubject(sub) {
  const counts = {};
  for (const [model, items] of stores) {
    if (model === 'Client') continue;
    for (const [id, entry] of items) {
      const owner = entry.payload.accountId ?? entry.payload.session?.accountId;
      if (owner === sub) {
        items.delete(id);
        counts[model] = (counts[model] ?? 0) + 1;
      }
    }
  }
  log(`revoked everything of sub=${sub}:`, JSON.stringify(counts));
  return counts;
}

// ---------------------------------------------------------------------------
// Clients live in the adapter too (not in the static `clients` option), so
// that the admin API can add or replace them at runtime.
// ---------------------------------------------------------------------------
const CLIENT_DEFAULTS = {
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  // OAuthenticator sends client_id/client_secret in the POST body unless
  // `basic_auth = True`; register client_secret_basic for that case.
  token_endpoint_auth_method: 'client_secret_post',
};
const normalizeClient = (metadata) => ({ ...CLIENT_DEFAULTS, ...metadata });

// ---------------------------------------------------------------------------
// HTML pages: self-contained (no external fonts/scripts: tests run offline).
// ---------------------------------------------------------------------------
const esc = (value) => String(value ?? '').replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

const STYLE = `
  body { font-family: system-ui, sans-serif; background: #f3f4f6; margin: 0; }
  main { max-width: 22rem; margin: 4rem auto; background: #fff; padding: 2rem;
         border-radius: 8px; box-shadow: 0 1px 4px rgba(0,0,0,.2); }
  h1 { font-size: 1.3rem; margin-top: 0; }
  label { display: block; margin-top: 1rem; font-weight: 600; }
  input { box-sizing: border-box; width: 100%; padding: .5rem; margin-top: .25rem; font-size: 1rem; }
  button { margin-top: 1.5rem; width: 100%; padding: .6rem; font-size: 1rem; cursor: pointer; }
  .error { color: #b00020; background: #fdecee; padding: .5rem; border-radius: 4px; }
  .hint, .client { color: #555; font-size: .9rem; }`;

function page(subtitle, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(TITLE)} — ${esc(subtitle)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

// The login form. Stable ids/names for tests: form#login-form, input#username
// (name=username), input#password (name=password), button#submit, p#error.
function loginPage({ uid, clientName, username = '', error }) {
  return page('sign in', `<h1>Sign in to ${esc(TITLE)}</h1>
${clientName ? `<p class="client">to continue to <strong>${esc(clientName)}</strong></p>` : ''}
${error ? `<p id="error" class="error" role="alert">${esc(error)}</p>` : ''}
<form id="login-form" method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label for="username">Username</label>
  <input id="username" name="username" type="text" value="${esc(username)}"
         autocomplete="username" autocapitalize="none" spellcheck="false" required ${username ? '' : 'autofocus'}>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required
         ${username ? 'autofocus' : ''}>
  <button id="submit" type="submit">Sign in</button>
</form>
${config.hint ? `<p id="hint" class="hint">${esc(config.hint)}</p>` : ''}`);
}

function errorPage(message, detail) {
  return page('error', `<h1>Sign-in error</h1>
<p id="error" class="error" role="alert">${esc(message)}</p>
${detail ? `<p class="hint">${esc(detail)}</p>` : ''}`);
}

// ---------------------------------------------------------------------------
// Provider configuration
// ---------------------------------------------------------------------------
const ttl = {
  AccessToken: 60 * 60,
  AuthorizationCode: 60,
  IdToken: 60 * 60,
  RefreshToken: 14 * 24 * 60 * 60,
  Interaction: 60 * 60,
  Session: 14 * 24 * 60 * 60,
  Grant: 14 * 24 * 60 * 60,
  ...(config.ttl ?? {}),
};

function signingKey() {
  // a fresh RSA key at every start; published at /jwks
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };
}

const configuration = {
  adapter: MapAdapter,
  jwks: { keys: [signingKey()] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },

  responseTypes: ['code'], // authorization code flow only
  scopes: ['openid', 'offline_access', ...Object.keys(scopeClaims).filter((s) => s !== 'openid')],
  claims: scopeClaims,
  // Put the claims of the granted scopes into the id_token as well, not only
  // into the userinfo response (oidc-provider's default for response_type=code
  // is an id_token with `sub` only).
  conformIdTokenClaims: false,

  async findAccount(ctx, sub) {
    const account = accountBySub(sub);
    if (!account) return undefined;
    return {
      accountId: sub,
      // oidc-provider filters these by the granted scopes/claims
      async claims() {
        return { ...account.claims, sub };
      },
    };
  },

  interactions: {
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },

  pkce: {
    required: () => config.require_pkce ?? true,
  },

  // Refresh tokens for every client allowed to use the refresh_token grant,
  // with or without the offline_access scope (OAuthenticator does not ask for it).
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => Boolean(config.rotate_refresh_tokens),

  ttl: Object.fromEntries(Object.entries(ttl).map(([name, seconds]) => [name, () => seconds])),

  features: {
    devInteractions: { enabled: false }, // we serve our own login form below
    userinfo: { enabled: true },
    revocation: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
    },
    introspection: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
    },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = page('sign out', `<h1>Sign out of ${esc(TITLE)}?</h1>
${form}
<button id="logout-yes" type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Yes, sign me out</button>
<button id="logout-no" type="submit" form="op.logoutForm">No, stay signed in</button>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('signed out', `<h1>Signed out</h1><p id="signed-out">You are signed out of ${esc(TITLE)}.</p>`);
      },
    },
  },

  async renderError(ctx, out, error) {
    ctx.type = 'html';
    ctx.body = errorPage(`${out.error}: ${out.error_description ?? ''}`, error?.error_detail);
  },
};

// ---------------------------------------------------------------------------
// Small HTTP helpers for our own routes
// ---------------------------------------------------------------------------
async function readBody(ctx, limit = 1024 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readJson(ctx) {
  const text = await readBody(ctx);
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw Object.assign(new Error('body is not valid JSON'), { status: 400 });
  }
}

function sendJson(ctx, status, body) {
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.body = JSON.stringify(body);
}

const sameSecret = (a, b) => crypto.timingSafeEqual(
  crypto.createHash('sha256').update(String(a)).digest(),
  crypto.createHash('sha256').update(String(b)).digest(),
);

function checkPassword(account, password) {
  return Boolean(account) && sameSecret(account.password, password ?? '');
}

// ---------------------------------------------------------------------------
// Interactions: login form and automatic consent
// ---------------------------------------------------------------------------
async function handleInteraction(ctx, provider, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    // e.g. cookie gone (different browser, expired, or the back button)
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = errorPage('This sign-in attempt has expired or is invalid. Go back to the application and try again.', err.message);
    return;
  }
  if (details.uid !== uid) {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = errorPage('This sign-in attempt does not match your browser session. Try again.');
    return;
  }

  const { prompt, params } = details;
  const client = await provider.Client.find(params.client_id);
  const clientName = client?.clientName || params.client_id;

  if (prompt.name === 'login') {
    if (ctx.method === 'GET' && !action) {
      ctx.type = 'html';
      ctx.body = loginPage({ uid, clientName, username: params.login_hint });
      return;
    }
    if (ctx.method === 'POST' && action === 'login') {
      const form = new URLSearchParams(await readBody(ctx, 64 * 1024));
      const username = (form.get('username') ?? '').trim();
      const account = accountByUsername(username);
      if (!checkPassword(account, form.get('password'))) {
        log(`login failed for username=${JSON.stringify(username)} (${account ? 'wrong password' : 'unknown user'})`);
        ctx.type = 'html';
        ctx.body = loginPage({ uid, clientName, username, error: 'Invalid username or password.' });
        return;
      }
      log(`login ok: username=${account.username} sub=${account.sub} client=${params.client_id}`);
      const returnTo = await provider.interactionResult(
        ctx.req,
        ctx.res,
        { login: { accountId: account.sub } },
        { mergeWithLastSubmission: false },
      );
      ctx.status = 303;
      ctx.redirect(returnTo);
      return;
    }
  }

  if (prompt.name === 'consent') {
    // Automatic consent: grant exactly what is missing, without asking.
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, { consent }, { mergeWithLastSubmission: true });
    ctx.status = 303;
    ctx.redirect(returnTo);
    return;
  }

  ctx.status = 400;
  ctx.type = 'html';
  ctx.body = errorPage(`Unsupported step "${prompt.name}" for ${ctx.method} ${ctx.path}.`);
}

// ---------------------------------------------------------------------------
// Admin API (JSON). Authorization: Bearer <admin_secret>
//   GET    /admin/accounts                      list accounts (without passwords)
//   PUT    /admin/accounts/{username}           add or replace {password, sub?, claims}
//   DELETE /admin/accounts/{username}           remove the account and revoke its tokens
//   POST   /admin/accounts/{username}/revoke    revoke sessions, grants and tokens
//   PUT    /admin/clients/{client_id}           add or replace a client (metadata JSON)
//   DELETE /admin/clients/{client_id}           remove a client
// ---------------------------------------------------------------------------
async function handleAdmin(ctx, provider) {
  if (!config.admin_secret) {
    sendJson(ctx, 404, { error: 'admin API disabled (no admin_secret in the config)' });
    return;
  }
  const auth = ctx.get('authorization');
  const token = auth.startsWith('Bearer ') ? auth.slice(7) : '';
  if (!token || !sameSecret(token, config.admin_secret)) {
    sendJson(ctx, 401, { error: 'missing or wrong admin secret' });
    return;
  }

  const parts = ctx.path.split('/').slice(2).map(decodeURIComponent); // after "/admin"
  const [collection, name, verb] = parts;

  if (collection === 'accounts') {
    if (parts.length === 1 && ctx.method === 'GET') {
      sendJson(ctx, 200, { accounts: [...accounts.values()].map(publicAccount) });
      return;
    }
    if (parts.length === 2 && ctx.method === 'PUT') {
      let account;
      try {
        account = putAccount(normalizeAccount(await readJson(ctx), name));
      } catch (err) {
        sendJson(ctx, err.status ?? 400, { error: err.message });
        return;
      }
      log(`account ${account.username} (sub=${account.sub}) added/replaced`);
      sendJson(ctx, 200, { account: publicAccount(account) });
      return;
    }
    const account = accountByUsername(name ?? '');
    if (!account) {
      sendJson(ctx, 404, { error: `no account ${name}` });
      return;
    }
    if (parts.length === 2 && ctx.method === 'DELETE') {
      accounts.delete(account.username.toLowerCase());
      log(`account ${account.username} removed`);
      sendJson(ctx, 200, { removed: publicAccount(account), revoked: revokeSubject(account.sub) });
      return;
    }
    if (parts.length === 3 && verb === 'revoke' && ctx.method === 'POST') {
      sendJson(ctx, 200, { revoked: revokeSubject(account.sub) });
      return;
    }
  }

  if (collection === 'clients' && parts.length === 2) {
    const clients = storeFor('Client');
    if (ctx.method === 'PUT') {
      const metadata = normalizeClient({ ...(await readJson(ctx)), client_id: name });
      const previous = clients.get(name);
      clients.set(name, { payload: metadata, expiresAt: Infinity });
      try {
        await provider.Client.find(name); // validates the metadata
      } catch (err) {
        if (previous) clients.set(name, previous); else clients.delete(name);
        sendJson(ctx, 400, { error: err.error_description ?? err.message });
        return;
      }
      log(`client ${name} added/replaced`);
      sendJson(ctx, 200, { client_id: name });
      return;
    }
    if (ctx.method === 'DELETE') {
      const existed = clients.delete(name);
      sendJson(ctx, existed ? 200 : 404, existed ? { removed: name } : { error: `no client ${name}` });
      return;
    }
  }

  sendJson(ctx, 404, { error: `no admin route ${ctx.method} ${ctx.path}` });
}

// ---------------------------------------------------------------------------
// Start: listen first (port 0 = any free port), then build the provider with
// the issuer URL that includes the actual port.
// ---------------------------------------------------------------------------
const host = config.host ?? (config.issuer ? new URL(config.issuer).hostname.replace(/^\[|\]$/g, '') : '127.0.0.1');
const port = Number(config.port ?? (config.issuer ? new URL(config.issuer).port || 80 : 0));
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, host, resolve);
});
const actualPort = server.address().port;
const issuer = config.issuer ?? `http://${host.includes(':') ? `[${host}]` : host}:${actualPort}`;

const provider = new Provider(issuer, configuration);

for (const client of config.clients ?? []) {
  storeFor('Client').set(client.client_id, { payload: normalizeClient(client), expiresAt: Infinity });
  await provider.Client.find(client.client_id); // fail early on invalid metadata
}

// Request log + our routes, in front of oidc-provider's own middleware.
provider.use(async (ctx, next) => {
  const started = Date.now();
  try {
    const interaction = ctx.path.match(/^\/interaction\/([^/]+)(?:\/([a-z]+))?$/);
    if (ctx.path === '/admin' || ctx.path.startsWith('/admin/')) {
      await handleAdmin(ctx, provider);
    } else if (interaction) {
      await handleInteraction(ctx, provider, interaction[1], interaction[2]);
    } else if (ctx.path === '/' && ctx.method === 'GET') {
      ctx.type = 'html';
      ctx.body = page('OpenID Connect provider', `<h1>${esc(TITLE)}</h1>
<p>Local OpenID Connect provider for tests and demos.
Discovery: <a href="/.well-known/openid-configuration">/.well-known/openid-configuration</a></p>`);
    } else {
      await next();
    }
  } catch (err) {
    log(`error on ${ctx.method} ${ctx.path}:`, err);
    ctx.status = err.status ?? 500;
    ctx.type = 'html';
    ctx.body = errorPage('Internal error in the sign-in service.', err.message);
  } finally {
    log(`${ctx.method} ${ctx.path} -> ${ctx.status} (${Date.now() - started} ms)`);
  }
});

// Surface protocol errors (bad PKCE verifier, invalid grant, ...) in the log.
for (const event of [
  'authorization.error', 'grant.error', 'userinfo.error', 'introspection.error',
  'revocation.error', 'end_session.error', 'server_error', 'jwks.error', 'discovery.error',
]) {
  provider.on(event, (ctx, err) => {
    log(`${event}: ${err.error ?? err.name}: ${err.error_description ?? err.message}`
      + (err.error_detail ? ` (${err.error_detail})` : ''));
  });
}

server.on('request', provider.callback());

function shutdown(reason) {
  log(`shutting down (${reason})`);
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (config.exit_on_stdin_close) {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}

log(`${TITLE}: issuer ${issuer}, ${accounts.size} account(s), ${(config.clients ?? []).length} client(s)`);
process.stdout.write(`READY ${issuer}\n`);
