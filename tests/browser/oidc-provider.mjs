// A third-party OpenID Connect provider for the IG console's browser tests: panva's
// `oidc-provider` (OpenID Certified), which nobody on the Concord team wrote, configured
// with one confidential client and three accounts. Started by `tests/console_browser_idp.rs`
// as `node tests/browser/oidc-provider.mjs`, with:
//
//   CONCORD_IDP_PORT          the port to listen on, on 127.0.0.1 (the issuer is
//                             http://localhost:{port}, another site than a gateway on
//                             127.0.0.1, as in production)
//   CONCORD_IDP_REDIRECT_URI  the gateway's callback, http://127.0.0.1:{port}/console/callback
//   CONCORD_IDP_SECRET        the client secret of `concord-console`
//
// It prints one line, `ready {issuer}`, once it listens. Its login and consent pages are the
// package's own development interactions: any login with any password signs in; the login
// names one of the accounts below (any other login is an account with no claims but `sub`).

import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.CONCORD_IDP_PORT);
const redirectUri = process.env.CONCORD_IDP_REDIRECT_URI;
const secret = process.env.CONCORD_IDP_SECRET;
if (!port || !redirectUri || !secret) {
  console.error('set CONCORD_IDP_PORT, CONCORD_IDP_REDIRECT_URI and CONCORD_IDP_SECRET');
  process.exit(2);
}
const issuer = `http://localhost:${port}`;

// Who can sign in: the login is the account's `sub`.
const accounts = {
  // An IG lead at the Riverside GP practice: the plain role and organisation claims.
  isla: {
    name: 'Isla Governance', org: 'A81001', role: 'ig-lead',
  },
  // An NHS smartcard user with three CIS2 roles: IG at the community trust, a nurse at the
  // GP, and Caldicott guardian at the council.
  cara: {
    name: 'Cara Smartcard',
    nhsid_nrbac_roles: [
      {
        person_roleid: '1', org_code: 'RY4', role_code: 'S8000:G8000:R8003', role_name: 'IG',
      },
      {
        person_roleid: '2', org_code: 'A81001', role_code: 'S0030:G0100:R0570', role_name: 'Nurse',
      },
      {
        person_roleid: '3', org_code: 'LA001', role_code: 'S8000:G8000:R8004', role_name: 'Caldicott',
      },
    ],
  },
  // A clinician: the console refuses this role.
  drew: {
    name: 'Drew Clinician', org: 'A81001', role: 'clinician',
  },
};

// A fresh RSA key each run, published at /jwks; ID tokens are RS256.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'concord-test-rs256', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'concord-console',
    client_secret: secret,
    redirect_uris: [redirectUri],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  }],
  jwks: { keys: [signingKey] },
  pkce: { required: () => true },
  // The provider's default, kept: as with NHS CIS2, the claims of the granted scopes
  // (name, role, organisation, `nhsid_nrbac_roles`) come from its UserInfo endpoint only, not
  // in the ID token, and the console reads them there.
  scopes: ['openid', 'profile', 'nationalrbacaccess'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'org', 'role'],
    nationalrbacaccess: ['nhsid_nrbac_roles'],
  },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['concord-browser-test-cookie-key'] },
  ttl: {
    AccessToken: 300, AuthorizationCode: 60, IdToken: 300, Interaction: 600, Session: 600, Grant: 600,
  },
  async findAccount(_ctx, id) {
    const claims = accounts[id] ?? {};
    return { accountId: id, claims: async () => ({ ...claims, sub: id }) };
  },
});

const server = createServer(provider.callback());
server.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
