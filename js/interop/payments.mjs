/*
 * Hand-built x402 payments, for the cases the official clients will not
 * produce (expired, replayed, tampered, wrongly signed) and for the
 * conformance vectors. Signing is viem's signTypedData, the same call the
 * official clients make; the envelopes follow the official clients' shapes
 * and key order (coinbase/x402 specs/x402-specification-v2.md 5.2).
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { randomBytes } from "node:crypto";
import { getAddress, parseSignature, serializeSignature, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { CHAIN_ID } from "./lib.mjs";

export const SECP256K1_N =
  0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141n;

const V1_CHAIN_IDS = { "base-sepolia": 84532, base: 8453 };

export const authorizationTypes = {
  TransferWithAuthorization: [
    { name: "from", type: "address" },
    { name: "to", type: "address" },
    { name: "value", type: "uint256" },
    { name: "validAfter", type: "uint256" },
    { name: "validBefore", type: "uint256" },
    { name: "nonce", type: "bytes32" },
  ],
};

/*
 * Sign over the number a JS verifier will read (BigInt("0x3e8") is 1000),
 * so that a malformed field is judged on its format, not on a signature
 * mismatch; what cannot be a uint256 is signed as 0.
 */
function looseUint(s) {
  try {
    const v = BigInt(s);
    return v >= 0n && v < 2n ** 256n ? v : 0n;
  } catch {
    return 0n;
  }
}

export function b64json(obj) {
  return Buffer.from(JSON.stringify(obj), "utf8").toString("base64");
}

export function unb64json(s) {
  return JSON.parse(Buffer.from(s, "base64").toString("utf8"));
}

/*
 * The 402 of a URL: {status, v2: PaymentRequired from PAYMENT-REQUIRED or
 * null, v1: the JSON body if it is a v1 PaymentRequirementsResponse}.
 */
export async function fetchRequirements(url, init = {}) {
  const res = await fetch(url, init);
  const text = await res.text();
  const h = res.headers.get("payment-required");
  let v2 = null;
  let v1 = null;
  if (h) {
    try {
      v2 = unb64json(h);
    } catch {
      v2 = null;
    }
  }
  try {
    const body = JSON.parse(text);
    if (body && body.x402Version === 1 && Array.isArray(body.accepts)) v1 = body;
  } catch {
    /* not JSON */
  }
  return { status: res.status, v2, v1, body: text };
}

/* Requirement fields in one shape whatever the version. */
function norm(version, req) {
  return {
    amount: version === 2 ? req.amount : req.maxAmountRequired,
    payTo: req.payTo,
    asset: req.asset,
    name: req.extra?.name,
    version: req.extra?.version,
    chainId: version === 2 ? Number(String(req.network).split(":")[1])
      : V1_CHAIN_IDS[req.network] ?? CHAIN_ID,
    maxTimeoutSeconds: req.maxTimeoutSeconds ?? 60,
  };
}

/*
 * Build a payment for requirement `req` (v2: an element of accepts, with
 * `required` the whole PaymentRequired for resource; v1: an element of the
 * v1 accepts).
 *
 * opts: key (signer), now (unix s), and overrides applied in this order:
 *   auth:       fields of the authorization to override (strings)
 *   domain:     fields of the EIP-712 domain to override
 *   signKey:    sign with another key than the one `from` names
 *   sig(sig):   post-process the 0x signature
 *   accepted:   fields of `accepted` to override (v2)
 *   envelope:   fields of the top-level payload to override
 */
export async function buildPayment(version, req, opts) {
  const { key, required } = opts;
  const now = opts.now ?? Math.floor(Date.now() / 1000);
  const r = norm(version, req);
  const from = privateKeyToAccount(key).address;
  const auth = {
    from,
    to: getAddress(r.payTo),
    value: String(r.amount),
    /* the legacy client's window; v2 2.27 sends 0 for validAfter */
    validAfter: String(now - 600),
    validBefore: String(now + r.maxTimeoutSeconds),
    nonce: toHex(randomBytes(32)),
    ...(opts.auth || {}),
  };
  const domain = {
    name: r.name,
    version: r.version,
    chainId: r.chainId,
    verifyingContract: getAddress(r.asset),
    ...(opts.domain || {}),
  };
  const signer = privateKeyToAccount(opts.signKey || key);
  let signature = await signer.signTypedData({
    domain,
    types: authorizationTypes,
    primaryType: "TransferWithAuthorization",
    message: {
      from: auth.from,
      to: auth.to,
      value: looseUint(auth.value),
      validAfter: looseUint(auth.validAfter),
      validBefore: looseUint(auth.validBefore),
      nonce: /^0x[0-9a-fA-F]{64}$/.test(auth.nonce) ? auth.nonce : `0x${"00".repeat(32)}`,
    },
  });
  if (opts.sig) signature = opts.sig(signature);
  let payload;
  if (version === 2) {
    payload = {
      x402Version: 2,
      payload: { authorization: auth, signature },
      ...(required?.extensions ? { extensions: required.extensions } : {}),
      ...(required?.resource ? { resource: required.resource } : {}),
      accepted: { ...req, ...(opts.accepted || {}) },
      ...(opts.envelope || {}),
    };
  } else {
    payload = {
      x402Version: 1,
      scheme: req.scheme,
      network: req.network,
      payload: { signature, authorization: auth },
      ...(opts.envelope || {}),
    };
  }
  return {
    version,
    headerName: version === 2 ? "PAYMENT-SIGNATURE" : "X-PAYMENT",
    header: b64json(payload),
    payload,
    requirement: req,
  };
}

/* ---- signature mutations ---- */

export function flipByte(sig, index = 10) {
  const b = Buffer.from(sig.slice(2), "hex");
  b[index] ^= 0x01;
  return `0x${b.toString("hex")}`;
}

/* The malleable twin: (r, n - s, other parity). Recovers to the same key. */
export function highS(sig) {
  const p = parseSignature(sig);
  const s = SECP256K1_N - BigInt(p.s);
  return serializeSignature({ r: p.r, s: `0x${s.toString(16).padStart(64, "0")}`,
    yParity: p.yParity === 0 ? 1 : 0 });
}

/* v as 0/1 instead of 27/28. */
export function v01(sig) {
  const b = Buffer.from(sig.slice(2), "hex");
  if (b[64] >= 27) b[64] -= 27;
  return `0x${b.toString("hex")}`;
}
