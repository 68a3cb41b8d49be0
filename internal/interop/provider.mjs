#!/usr/bin/env node
// Test OpenID Provider for the interop tests: a real oidc-provider (exact
// version pinned in package.json) with non-interactive login, consent and
// logout, so that a Go http.Client with a cookie jar can drive it.
//
// Usage:
//   node provider.mjs [--port N] [--path /prefix] [--initial-access-token T]
//                     [--secret-lifetime S] [--access-token-ttl S] [--id-token-ttl S]
//                     [--refresh-token-ttl S] [--clock-tolerance S]
//                     [--rotate-registration-access-token true|false]
//                     [--logout auto|form] [--id-token-scope-claims]
//                     [--backchannel-logout] [--require-par] [--dpop-nonce]
//                     [--require-request-objects] [--auth-methods M,M...] [--encryption]
//
// Every flag can also be given through the environment as OP_<FLAG> with the
// flag name upper-cased and dashes turned into underscores (for example
// OP_SECRET_LIFETIME=30). A flag on the command line wins over the environment.
//
//   --port N                  TCP port on 127.0.0.1; 0 (default) picks a free one.
//   --path /prefix            Path prefix of the issuer; the provider is mounted
//                             under it. Default: none (issuer http://127.0.0.1:PORT).
//   --initial-access-token T  Dynamic registration requires "Authorization: Bearer T"
//                             (RFC 7591 initial access token). Default: open registration.
//   --secret-lifetime S       Client secrets issued by registration expire S seconds after
//                             issue (client_secret_expires_at = now + S). 0 (default): never.
//   --access-token-ttl S      Access token lifetime. Default 3600.
//   --id-token-ttl S          ID token lifetime. Default 3600.
//   --refresh-token-ttl S     Refresh token lifetime. Default 1209600 (14 days).
//   --clock-tolerance S       Leeway the provider applies to expiry checks of incoming JWTs
//                             and client secrets. Default 0 (the tests share one clock).
//   --rotate-registration-access-token true|false
//                             Whether an RFC 7592 PUT replaces the registration access
//                             token (the old one stops working). Default true.
//   --logout auto|form        How the end_session confirmation works (see below). Default auto.
//   --id-token-scope-claims   Also put the claims of the granted scopes (name, email, ...)
//                             in the ID token. Default: only in the userinfo response, as
//                             OpenID Connect Core 5.4 asks when an access token is issued.
//   --backchannel-logout      Enable OpenID Connect Back-Channel Logout 1.0 (see below).
//                             Default: off.
//   --require-par             Require pushed authorization requests (RFC 9126): discovery
//                             says require_pushed_authorization_requests, and the
//                             authorization endpoint refuses requests that were not pushed.
//                             Default: PAR offered (pushed_authorization_request_endpoint),
//                             not required.
//   --dpop-nonce              Require a server-provided nonce in DPoP proofs (RFC 9449 §8, §9):
//                             a proof without the current one is answered use_dpop_nonce with
//                             a DPoP-Nonce header. DPoP itself (features.dPoP) is always on;
//                             a client registered with dpop_bound_access_tokens must use it.
//                             Each issued access token is logged on stderr as
//                             "access_token.saved: client=ID dpop=bound|none". Default: off.
//   --require-request-objects Require signed request objects (RFC 9101): discovery says
//                             require_signed_request_object, every client is registered
//                             with it, and an authorization request without one is refused.
//                             Request objects (features.requestObjects) are always accepted;
//                             each one whose claims are checked is logged on stderr as
//                             "request_object: route=R client=ID alg=A typ=T kid=K".
//                             Default: off.
//   --auth-methods M,M...     The client authentication methods the provider supports
//                             and advertises (token_endpoint_auth_methods_supported),
//                             comma-separated. Default: client_secret_basic,
//                             client_secret_post, client_secret_jwt, private_key_jwt, none
//                             (oidc-provider's own default). Every client assertion the
//                             provider verifies (private_key_jwt, client_secret_jwt) is
//                             logged on stderr as "client_assertion: route=R client=ID
//                             alg=A kid=K aud=AUD".
//   --encryption              Enable encrypted responses (features.encryption, and
//                             features.jwtUserinfo for userinfo): discovery lists
//                             id_token_encryption_* and userinfo_encryption_* values, and a client that registered
//                             id_token_encrypted_response_alg (userinfo_...) gets its ID
//                             tokens (userinfo responses) as JWEs encrypted to a key of
//                             its registered jwks. Default: off.
//
// Registrations and RFC 7592 updates that succeed are logged on stderr as
// "client_saved: route=registration|client_update client=ID auth=METHOD kids=K1,K2"
// (kids of the registered jwks, "-" when none).
//
// Output: exactly one line on stdout, "READY <issuer>", once the server listens.
// Everything else (errors, one line per login/consent, provider notices) goes to
// stderr. SIGTERM or SIGINT closes the server and exits with status 0.
//
// Behaviour that a client sees:
//
// Login and consent. The interaction URL <issuer>/interaction/<uid> is served by
//   this script, not by a page: it logs in the fixed user "test-user" (name "Test User",
//   email "test@example.test", email_verified true, groups ["staff","dev"]), grants every
//   requested scope and claim, and answers 303 to the provider's resume URL, which
//   answers 303 to the redirect_uri. A client that follows redirects with a cookie jar
//   completes the login. The provider only sends the browser to the interaction URL
//   when it needs a login (no session) or a consent (no grant yet for that client and
//   scope): an authorization request that goes straight back to the redirect_uri was
//   answered from an existing session.
//
// Logout. GET (or POST) <end_session_endpoint>?id_token_hint=...&post_logout_redirect_uri=...&state=...
//   --logout auto: the provider's confirmation page is replaced by a 303 to
//     <issuer>/session/end/auto?xsrf=..., where this script submits the confirmation
//     (logout=yes) to <issuer>/session/end/confirm for the browser and relays the
//     answer: 303 to post_logout_redirect_uri?state=... (or to the provider's
//     "signed out" page when no post_logout_redirect_uri was given). Following
//     redirects is enough.
//   --logout form: the answer is a 200 HTML page with one <form method="post"
//     action="<issuer>/session/end/confirm"> whose hidden inputs (xsrf, logout=yes)
//     the client POSTs as application/x-www-form-urlencoded with its cookies; the
//     answer is the same 303 as above. (Without a session the provider itself
//     answers with an auto-submitting form carrying the same hidden inputs.)
//   Either way the session ends, every grant of that session is revoked (so their
//   refresh tokens stop working) and the next authorization request goes through the
//   interaction URL again.
//
// Back-channel logout (--backchannel-logout). Discovery says
//   backchannel_logout_supported and backchannel_logout_session_supported; clients may
//   register backchannel_logout_uri (http allowed) and backchannel_logout_session_required,
//   and then get a "sid" claim in their ID tokens (one sid per client and provider
//   session). When a logout is confirmed, the provider POSTs a logout token (typ
//   logout+jwt, signed like the client's ID tokens, exp 120 s, sid when required) to the
//   backchannel_logout_uri of every client signed in through that provider session, and
//   waits for the answers (2.5 s at most each) before answering the browser; a failure
//   is logged on stderr ("backchannel.error"). oidc-provider refuses to send requests to
//   special-use addresses such as loopback (SSRF protection); this script lets its
//   requests to 127.0.0.1 and ::1 through, so that RPs on loopback ports can be reached.
//
// Client secret expiry (--secret-lifetime S). The registration response carries
//   client_secret_expires_at = issue time + S; the provider's own check then rejects
//   client_secret_basic / client_secret_post at the token endpoint with 401
//   invalid_client once that time has passed. The authorization endpoint does not look
//   at the secret. RFC 7592 GET still works (registration access token, not the secret)
//   and returns the same, expired, secret. Every RFC 7592 PUT of a client that has a
//   secret issues a new client_secret with a new client_secret_expires_at = now + S
//   (RFC 7592 2.2 lets the server do so; the client must discard the old one).

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

// oidc-provider prints its notices with console.info, which goes to stdout;
// stdout is reserved for the READY line.
console.info = console.error;
console.log = console.error;

const FLAGS = {
  port: { type: 'string', default: '0' },
  path: { type: 'string', default: '' },
  'initial-access-token': { type: 'string', default: '' },
  'secret-lifetime': { type: 'string', default: '0' },
  'access-token-ttl': { type: 'string', default: '3600' },
  'id-token-ttl': { type: 'string', default: '3600' },
  'refresh-token-ttl': { type: 'string', default: String(14 * 24 * 60 * 60) },
  'clock-tolerance': { type: 'string', default: '0' },
  'rotate-registration-access-token': { type: 'string', default: 'true' },
  logout: { type: 'string', default: 'auto' },
  'id-token-scope-claims': { type: 'boolean', default: false },
  'backchannel-logout': { type: 'boolean', default: false },
  'require-par': { type: 'boolean', default: false },
  'dpop-nonce': { type: 'boolean', default: false },
  'require-request-objects': { type: 'boolean', default: false },
  'auth-methods': { type: 'string', default: 'client_secret_basic,client_secret_post,client_secret_jwt,private_key_jwt,none' },
  encryption: { type: 'boolean', default: false },
};

function fail(msg) {
  console.error(`provider.mjs: ${msg}`);
  process.exit(2);
}

function readConfig() {
  let parsed;
  try {
    parsed = parseArgs({
      options: FLAGS, strict: true, allowPositionals: false, tokens: true,
    });
  } catch (err) {
    fail(err.message);
  }
  const explicit = new Set(parsed.tokens.filter((t) => t.kind === 'option').map((t) => t.name));
  const values = {};
  for (const [name, spec] of Object.entries(FLAGS)) {
    let value = parsed.values[name];
    const env = process.env[`OP_${name.toUpperCase().replaceAll('-', '_')}`];
    if (!explicit.has(name) && env !== undefined && env !== '') {
      value = spec.type === 'boolean' ? !['0', 'false', 'no'].includes(env.toLowerCase()) : env;
    }
    values[name] = value;
  }

  const int = (name, min) => {
    const n = Number(values[name]);
    if (!Number.isSafeInteger(n) || n < min) fail(`--${name} must be an integer >= ${min}, got ${values[name]}`);
    return n;
  };
  const bool = (name) => {
    const v = String(values[name]).toLowerCase();
    if (['true', '1', 'yes'].includes(v)) return true;
    if (['false', '0', 'no'].includes(v)) return false;
    return fail(`--${name} must be true or false, got ${values[name]}`);
  };

  let prefix = values.path;
  if (prefix === '/') prefix = '';
  if (prefix && (!prefix.startsWith('/') || prefix.endsWith('/') || /[?#\s]/.test(prefix))) {
    fail(`--path must start with "/", must not end with "/" and must be a plain path, got ${prefix}`);
  }
  if (!['auto', 'form'].includes(values.logout)) fail(`--logout must be auto or form, got ${values.logout}`);

  const authMethods = values['auth-methods'].split(',').map((m) => m.trim()).filter(Boolean);
  const knownMethods = ['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', 'none'];
  if (!authMethods.length || authMethods.some((m) => !knownMethods.includes(m))) {
    fail(`--auth-methods must list some of ${knownMethods.join(',')}, got ${values['auth-methods']}`);
  }

  const port = int('port', 0);
  if (port > 65535) fail('--port must be <= 65535');

  return {
    port,
    prefix,
    initialAccessToken: values['initial-access-token'],
    secretLifetime: int('secret-lifetime', 0),
    accessTokenTTL: int('access-token-ttl', 1),
    idTokenTTL: int('id-token-ttl', 1),
    refreshTokenTTL: int('refresh-token-ttl', 1),
    clockTolerance: int('clock-tolerance', 0),
    rotateRegistrationAccessToken: bool('rotate-registration-access-token'),
    logout: values.logout,
    idTokenScopeClaims: bool('id-token-scope-claims'),
    backchannelLogout: bool('backchannel-logout'),
    requirePAR: bool('require-par'),
    dpopNonce: bool('dpop-nonce'),
    requireRequestObjects: bool('require-request-objects'),
    authMethods,
    encryption: bool('encryption'),
  };
}

const cfg = readConfig();

// The fixed test user.
const TEST_USER = {
  sub: 'test-user',
  name: 'Test User',
  email: 'test@example.test',
  email_verified: true,
  groups: ['staff', 'dev'],
};

function signingKeys() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    keys: [{
      ...jwk, kid: crypto.randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig',
    }],
  };
}

const epoch = () => Math.floor(Date.now() / 1000);
const newSecret = () => crypto.randomBytes(32).toString('base64url');

function buildProvider(issuer) {
  const configuration = {
    // No adapter: oidc-provider's in-memory adapter; a restart forgets everything.
    jwks: signingKeys(),
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    clockTolerance: cfg.clockTolerance,
    conformIdTokenClaims: !cfg.idTokenScopeClaims,

    findAccount(_ctx, sub) {
      if (sub !== TEST_USER.sub) return undefined;
      return {
        accountId: sub,
        async claims() { return { ...TEST_USER }; },
      };
    },
    claims: {
      acr: null,
      sid: null,
      auth_time: null,
      iss: null,
      openid: ['sub'],
      profile: ['name'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],

    // RFC 7591 defaults: a client gets refresh tokens only if it registers the
    // refresh_token grant type.
    clientDefaults: {
      application_type: 'web',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: cfg.authMethods.includes('client_secret_basic') ? 'client_secret_basic' : cfg.authMethods[0],
      id_token_signed_response_alg: 'RS256',
    },
    clientAuthMethods: cfg.authMethods,
    // Not a FAPI profile: the default checks nothing more; log the client
    // assertion, once verified, so tests can see it was used.
    async assertJwtClientAuthClaimsAndHeader(ctx, claims, header, client) {
      console.error(`client_assertion: route=${ctx.oidc.route} client=${client.clientId} alg=${header.alg} kid=${header.kid} aud=${claims.aud}`);
    },

    // S256 is the only method oidc-provider 9 implements; make it mandatory for every client.
    pkce: { required: () => true },

    // Refresh tokens whenever the client registered the grant type; stock
    // oidc-provider also wants the offline_access scope (which it drops from
    // requests without prompt=consent).
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),

    ttl: {
      AccessToken: cfg.accessTokenTTL,
      AuthorizationCode: 60,
      IdToken: cfg.idTokenTTL,
      RefreshToken: cfg.refreshTokenTTL,
      Interaction: 10 * 60,
      Session: 24 * 60 * 60,
      Grant: 24 * 60 * 60,
    },

    // The provider's own requests (back-channel logout tokens) go through
    // an SSRF-protected dispatcher that refuses loopback addresses; the
    // relying parties under test listen on loopback, so requests to it go
    // without that dispatcher.
    fetch: (url, options) => {
      const { hostname } = new URL(url);
      if (['127.0.0.1', '[::1]', 'localhost'].includes(hostname)) {
        const { dispatcher, ...rest } = options;
        return globalThis.fetch(url, rest);
      }
      return globalThis.fetch(url, options);
    },

    interactions: {
      url: (_ctx, interaction) => `${cfg.prefix}/interaction/${interaction.uid}`,
    },

    features: {
      devInteractions: { enabled: false },
      registration: {
        enabled: true,
        initialAccessToken: cfg.initialAccessToken || false,
      },
      registrationManagement: {
        enabled: true,
        rotateRegistrationAccessToken: cfg.rotateRegistrationAccessToken,
      },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          // The form carries the xsrf token; adding logout=yes makes posting its
          // hidden inputs end the whole session (the provider's own page puts it
          // on the "Yes" button instead).
          ctx.type = 'html';
          ctx.body = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Logout</title></head>
<body>${form.replace('</form>', '<input type="hidden" name="logout" value="yes"/></form>')}
<button type="submit" form="op.logoutForm">Sign out</button></body></html>`;
        },
        async postLogoutSuccessSource(ctx) {
          ctx.type = 'html';
          ctx.body = '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Signed out</title></head><body><h1>Signed out</h1></body></html>';
        },
      },
      backchannelLogout: { enabled: cfg.backchannelLogout },
      pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: cfg.requirePAR },
      dPoP: cfg.dpopNonce
        ? { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => true }
        : { enabled: true },
      requestObjects: {
        enabled: true,
        requireSignedRequestObject: cfg.requireRequestObjects,
        // Not a FAPI profile: the default checks nothing more; log the request
        // object so tests can see it was used.
        async assertJwtClaimsAndHeader(ctx, claims, header, client) {
          console.error(`request_object: route=${ctx.oidc.route} client=${client.clientId} alg=${header.alg} typ=${header.typ} kid=${header.kid}`);
        },
      },
      encryption: { enabled: cfg.encryption },
      // JWT userinfo responses (signed and/or encrypted as registered);
      // oidc-provider advertises userinfo encryption only with it.
      jwtUserinfo: { enabled: cfg.encryption },
      userinfo: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: false },
    },
  };

  const provider = new Provider(issuer, configuration);

  provider.use(async (ctx, next) => {
    await next();
    const route = ctx.oidc?.route;

    if (route === 'end_session' && cfg.logout === 'auto' && ctx.status === 200) {
      const secret = ctx.oidc.session?.state?.secret;
      if (secret) {
        ctx.status = 303;
        ctx.redirect(`${cfg.prefix}/session/end/auto?xsrf=${encodeURIComponent(secret)}`);
      }
      return;
    }

    if (ctx.body?.client_id && ((route === 'registration' && ctx.status === 201) || (route === 'client_update' && ctx.status === 200))) {
      const kids = (ctx.body.jwks?.keys || []).map((k) => k.kid).join(',') || '-';
      console.error(`client_saved: route=${route} client=${ctx.body.client_id} auth=${ctx.body.token_endpoint_auth_method} kids=${kids}`);
    }

    if (cfg.secretLifetime > 0 && ctx.body?.client_secret
      && ((route === 'registration' && ctx.status === 201) || (route === 'client_update' && ctx.status === 200))) {
      // Rewrite the stored client: the provider's client authentication then
      // enforces client_secret_expires_at by itself.
      const clientId = ctx.body.client_id;
      const stored = await provider.Client.adapter.find(clientId);
      if (!stored) throw new Error(`client ${clientId} vanished`);
      if (route === 'client_update') stored.client_secret = newSecret();
      stored.client_secret_expires_at = epoch() + cfg.secretLifetime;
      await provider.Client.adapter.upsert(clientId, stored);
      ctx.body.client_secret = stored.client_secret;
      ctx.body.client_secret_expires_at = stored.client_secret_expires_at;
    }
  });

  provider.on('server_error', (_ctx, err) => console.error('server_error:', err));
  provider.on('backchannel.success', (_ctx, client) => console.error(`backchannel.success: client=${client.clientId}`));
  provider.on('access_token.saved', (token) => console.error(`access_token.saved: client=${token.clientId} dpop=${token.jkt ? 'bound' : 'none'}`));
  provider.on('pushed_authorization_request.success', (_ctx, client) => console.error(`pushed_authorization_request.success: client=${client.clientId}`));
  for (const event of [
    'authorization.error', 'grant.error', 'registration_create.error', 'registration_read.error',
    'registration_update.error', 'registration_delete.error', 'end_session.error', 'userinfo.error',
    'revocation.error', 'jwks.error', 'discovery.error', 'backchannel.error', 'pushed_authorization_request.error',
  ]) {
    provider.on(event, (_ctx, err) => console.error(`${event}: ${err.error || err.name}: ${err.error_description || err.message}`));
  }

  return provider;
}

// Finishes an interaction without any page: login of the test user and/or
// consent to everything that was asked for.
async function finishInteraction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, uid } = details;
  const clientId = params.client_id;

  let grant;
  if (details.grantId) grant = await provider.Grant.find(details.grantId);
  if (!grant) grant = new provider.Grant({ accountId: TEST_USER.sub, clientId });

  if (params.scope) grant.addOIDCScope(params.scope);
  const pd = prompt.details || {};
  if (pd.missingOIDCScope) grant.addOIDCScope(pd.missingOIDCScope.join(' '));
  if (pd.missingOIDCClaims) grant.addOIDCClaims(pd.missingOIDCClaims);
  if (pd.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(pd.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();

  const result = { consent: { grantId } };
  if (prompt.name === 'login' || !details.session) {
    result.login = { accountId: TEST_USER.sub, remember: true };
  }
  console.error(`interaction ${uid}: prompt=${prompt.name} reasons=${prompt.reasons.join(',')} client=${clientId} -> ${Object.keys(result).join('+')}`);
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

// Submits the logout confirmation for the browser and relays the answer.
async function autoConfirmLogout(port, req, res, url) {
  const body = new URLSearchParams({ xsrf: url.searchParams.get('xsrf') || '', logout: 'yes' });
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (req.headers.cookie) headers.cookie = req.headers.cookie;
  if (req.headers['user-agent']) headers['user-agent'] = req.headers['user-agent'];
  const answer = await fetch(`http://127.0.0.1:${port}${cfg.prefix}/session/end/confirm`, {
    method: 'POST', headers, body, redirect: 'manual',
  });
  const out = { 'cache-control': 'no-store' };
  for (const name of ['location', 'content-type']) {
    const v = answer.headers.get(name);
    if (v) out[name] = v;
  }
  const cookies = answer.headers.getSetCookie();
  if (cookies.length) out['set-cookie'] = cookies;
  const text = await answer.text();
  res.writeHead(answer.status, out);
  res.end(text);
}

function plain(res, status, text) {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`${text}\n`);
}

let provider;
let callback;

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://127.0.0.1');
    const { pathname } = url;
    if (cfg.prefix && pathname !== cfg.prefix && !pathname.startsWith(`${cfg.prefix}/`)) {
      plain(res, 404, `not found: the provider is mounted under ${cfg.prefix}`);
      return;
    }
    const local = pathname.slice(cfg.prefix.length) || '/';

    if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(local)) {
      await finishInteraction(provider, req, res);
      return;
    }
    if (req.method === 'GET' && local === '/session/end/auto') {
      await autoConfirmLogout(server.address().port, req, res, url);
      return;
    }

    // Mount: oidc-provider derives its mount path from originalUrl vs url.
    req.originalUrl = req.url;
    req.url = req.url.slice(cfg.prefix.length) || '/';
    callback(req, res);
  } catch (err) {
    console.error(`${req.method} ${req.url}: ${err.stack || err}`);
    if (!res.headersSent) {
      plain(res, err.status && err.status < 500 ? err.status : 500, `${err.error || err.name}: ${err.error_description || err.message}`);
    } else {
      res.destroy();
    }
  }
});

server.on('error', (err) => fail(`listen on 127.0.0.1:${cfg.port}: ${err.message}`));

server.listen(cfg.port, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}${cfg.prefix}`;
  try {
    provider = buildProvider(issuer);
    callback = provider.callback();
  } catch (err) {
    fail(`configuration: ${err.stack || err}`);
  }
  process.stdout.write(`READY ${issuer}\n`);
});

function shutdown(signal) {
  console.error(`provider.mjs: ${signal}, shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
