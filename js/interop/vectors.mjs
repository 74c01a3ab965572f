/*
 * The conformance vector set (issue 5 item 5): valid and invalid payments of
 * every kind we can produce with viem, for one priced URL, signed against the
 * LOCAL chain's domain (the URL's own 402 gives the requirements).
 *
 * Each vector: {id, version, kind, local, header, headerName, payload,
 * requirement, note}.
 *   local: "accept"  a valid payment: both sides should take it;
 *          "refuse"  invalid for a reason a local verifier can see (shape,
 *                    matching, window, recipient, value, signature);
 *          "remote"  invalid only on chain (balance): only the facilitator
 *                    can tell;
 *          "strict"  a payment the official facilitator may take but the
 *                    spec's wire format rules out (we may refuse);
 *          "defer"   not a 65-byte ECDSA signature: it could be a smart
 *                    wallet's (ERC-1271), so only the facilitator can judge
 *                    it; refused, but asking the facilitator is allowed.
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { createWalletClient, getAddress, http, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { x402Client } from "@x402/core/client";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { b64json, buildPayment, flipByte, highS, unb64json, v01 } from "./payments.mjs";
import { chainDef } from "./lib.mjs";

const OTHER = "0x1111111111111111111111111111111111111111";

/* [id, kind, note, opts(ctx) for buildPayment, versions] */
function catalogue(ctx) {
  const now = ctx.now;
  const { payer, payer2, poor } = ctx.keys;
  return [
    ["valid", "accept", "as the official client builds it", {}, [1, 2]],
    ["valid_lowercase_addresses", "accept", "from/to in lower case (addresses compare case-insensitively)",
      { authFn: (a) => ({ from: a.from.toLowerCase(), to: a.to.toLowerCase() }) }, [1, 2]],
    ["insufficient_balance", "remote", "a payer without tokens, correctly signed",
      { key: poor }, [1, 2]],
    ["sig_flipped_byte", "refuse", "one bit of r flipped",
      { sig: (s) => flipByte(s, 10) }, [1, 2]],
    ["sig_other_key", "refuse", "signed by another key than `from`",
      { signKey: payer2 }, [1, 2]],
    ["sig_high_s", "refuse", "the malleable high-s twin (recovers to `from`, refused on chain)",
      { sig: highS }, [1, 2]],
    ["sig_v_0_1", "refuse", "v as 0/1 instead of 27/28",
      { sig: v01 }, [1, 2]],
    ["sig_truncated", "defer", "64-byte signature (v dropped): not an EOA signature, may be a smart wallet's",
      { sig: (s) => s.slice(0, 130) }, [1, 2]],
    ["sig_zero", "refuse", "65 zero bytes",
      { sig: () => `0x${"00".repeat(65)}` }, [1, 2]],
    ["to_mismatch", "refuse", "authorization pays someone else",
      { auth: { to: getAddress(OTHER) } }, [1, 2]],
    ["value_low", "refuse", "value = price - 1",
      { authFn: (a) => ({ value: String(BigInt(a.value) - 1n) }) }, [1, 2]],
    ["value_high", "refuse", "value = price + 1 (exact equality rule)",
      { authFn: (a) => ({ value: String(BigInt(a.value) + 1n) }) }, [1, 2]],
    ["expired", "refuse", "validBefore one minute in the past",
      { auth: { validBefore: String(now - 60) } }, [1, 2]],
    ["expiring_within_margin", "refuse", "validBefore = now + 2 (< now + 6)",
      { auth: { validBefore: String(now + 2) } }, [1, 2]],
    ["not_yet_valid", "refuse", "validAfter one hour ahead",
      { auth: { validAfter: String(now + 3600) } }, [1, 2]],
    ["domain_chain_id", "refuse", "signed for chain 8453",
      { domain: { chainId: 8453 } }, [1, 2]],
    ["domain_name", "refuse", "signed with name \"USD Coin\"",
      { domain: { name: "USD Coin" } }, [1, 2]],
    ["domain_version", "refuse", "signed with version \"1\"",
      { domain: { version: "1" } }, [1, 2]],
    ["domain_contract", "refuse", "signed for another verifying contract",
      { domain: { verifyingContract: getAddress(OTHER) } }, [1, 2]],
    ["nonce_short", "refuse", "31-byte nonce",
      { auth: { nonce: toHex(new Uint8Array(31).fill(7)) } }, [1, 2]],
    ["value_hex", "strict", "value \"0x3e8\": not a decimal string (JS BigInt reads it)",
      { authFn: (a) => ({ value: `0x${BigInt(a.value).toString(16)}` }) }, [1, 2]],
    ["value_negative", "refuse", "value \"-1000\"",
      { authFn: (a) => ({ value: `-${a.value}` }) }, [1, 2]],
    ["accepted_network", "refuse", "accepted.network eip155:8453",
      { accepted: { network: "eip155:8453" } }, [2]],
    ["accepted_amount", "refuse", "accepted.amount and value lowered to 1",
      { accepted: { amount: "1" }, auth: { value: "1" } }, [2]],
    ["accepted_pay_to", "refuse", "accepted.payTo and to both another address",
      { accepted: { payTo: getAddress(OTHER) }, auth: { to: getAddress(OTHER) } }, [2]],
    ["accepted_scheme", "refuse", "accepted.scheme \"upto\"",
      { accepted: { scheme: "upto" } }, [2]],
    ["accepted_asset", "refuse", "accepted.asset another token (and signed for it)",
      { accepted: { asset: getAddress(OTHER) }, domain: { verifyingContract: getAddress(OTHER) } }, [2]],
    ["accepted_extra_dropped", "strict", "accepted.extra {} (the facilitator uses the server's extra)",
      { accepted: { extra: {} } }, [2]],
    ["v1_network", "refuse", "network \"base\"",
      { envelope: { network: "base" } }, [1]],
    ["v1_scheme", "refuse", "scheme \"upto\"",
      { envelope: { scheme: "upto" } }, [1]],
    ["version_mismatch", "refuse", "x402Version 2 in an X-PAYMENT envelope",
      { envelope: { x402Version: 2 } }, [1]],
  ];
}

/*
 * required: {v2: PaymentRequired | null, v1: v1 body | null} from the 402.
 * keys: {payer, payer2, poor} private keys.
 */
export async function makeVectors(required, keys, { now, only } = {}) {
  const ctx = { now: now ?? Math.floor(Date.now() / 1000), keys };
  const out = [];
  for (const [id, kind, note, o, versions] of catalogue(ctx)) {
    for (const version of versions) {
      if (only && !only.includes(id)) continue;
      const req = version === 2 ? required.v2?.accepts?.[0] : required.v1?.accepts?.[0];
      if (!req) continue;
      const opts = { key: keys.payer, required: version === 2 ? required.v2 : null,
        now: ctx.now, ...o };
      if (o.authFn) {
        /* overrides that depend on the base authorization */
        const base = await buildPayment(version, req, { ...opts, authFn: undefined });
        opts.auth = { ...base.payload.payload.authorization, ...(o.auth || {}),
          ...o.authFn(base.payload.payload.authorization) };
      }
      const p = await buildPayment(version, req, opts);
      out.push({ id: `v${version}/${id}`, version, kind, note, ...p });
    }
  }
  return out;
}

/*
 * Payments made by the official client packages themselves (v2:
 * @x402/core x402Client + @x402/evm exact; v1: the legacy x402 package's
 * createPaymentHeader), as sent and with a field changed after signing.
 */
export async function makeOfficialVectors(required, keys) {
  const out = [];
  const account = privateKeyToAccount(keys.payer);
  const tamper = [
    ["official_client", "accept", "built by the official client, unchanged", null],
    ["official_client_value_changed", "refuse", "official payment, value raised after signing",
      (a) => { a.value = String(BigInt(a.value) + 1n); }],
    ["official_client_to_changed", "refuse", "official payment, `to` changed after signing",
      (a) => { a.to = getAddress("0x2222222222222222222222222222222222222222"); }],
    ["official_client_nonce_changed", "refuse", "official payment, nonce changed after signing",
      (a) => { a.nonce = toHex(new Uint8Array(32).fill(9)); }],
    ["official_client_valid_before_extended", "refuse",
      "official payment, validBefore extended after signing",
      (a) => { a.validBefore = String(BigInt(a.validBefore) + 3600n); }],
  ];
  for (const [id, kind, note, fn] of tamper) {
    if (required.v2) {
      const client = new x402Client().register("eip155:*", new ExactEvmScheme(account));
      const payload = await client.createPaymentPayload(required.v2);
      if (fn) fn(payload.payload.authorization);
      const req = required.v2.accepts.find((a) => a.scheme === payload.accepted.scheme
        && a.network === payload.accepted.network) ?? required.v2.accepts[0];
      out.push({ id: `v2/${id}`, version: 2, kind, note, headerName: "PAYMENT-SIGNATURE",
        header: b64json(payload), payload, requirement: req });
    }
    if (required.v1) {
      const req = required.v1.accepts[0];
      /* chain 84532 = base-sepolia for the legacy client; signing is local */
      const wallet = createWalletClient({ account, chain: chainDef("http://127.0.0.1:9"),
        transport: http("http://127.0.0.1:9") });
      /* loaded here: the legacy package is slow to import (its Solana side) */
      const { createPaymentHeader } = await import("x402/client");
      let header = await createPaymentHeader(wallet, 1, req);
      const payload = unb64json(header);
      if (fn) {
        fn(payload.payload.authorization);
        header = b64json(payload);
      }
      out.push({ id: `v1/${id}`, version: 1, kind, note, headerName: "X-PAYMENT",
        header, payload, requirement: req });
    }
  }
  return out;
}

/*
 * The official facilitator's reasons that a local verifier can see for
 * itself (coinbase/x402
 * typescript/packages/mechanisms/evm/src/exact/facilitator/eip3009.ts): a
 * payment refused for one of these must be refused locally too.
 */
export const LOCALLY_VISIBLE_REASONS = new Set([
  "invalid_exact_evm_scheme",
  "invalid_exact_evm_network_mismatch",
  "invalid_exact_evm_missing_eip712_domain",
  "invalid_exact_evm_recipient_mismatch",
  "invalid_exact_evm_signature",
  "invalid_exact_evm_payload_authorization_valid_before",
  "invalid_exact_evm_payload_authorization_valid_after",
  "invalid_exact_evm_authorization_value",
  "invalid_exact_evm_payload_authorization_value_mismatch",
  "invalid_exact_evm_failed_to_parse_signature",
]);
