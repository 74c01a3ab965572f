// Payment vectors for the core's unit tests, produced by independent
// implementations: viem signs and hashes, the official @x402/core client and
// the legacy `x402` package shape and encode the headers.
// Deterministic: fixed keys, fixed clock, nonces derived from names.
//
//   cd js && node vectors/gen-vectors.mjs
//
// writes ../src/core/tests/data/vectors.json. Each vector carries the
// verdict the spec rules give (coinbase/x402
// specs/schemes/exact/scheme_exact_evm.md, Phase 2): decode failure with its
// reason, or ok / reason after matching against `offer` at `now`.

import "../webcrypto.mjs"; // first: global crypto on Node 18
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  encodePacked,
  getAddress,
  hashDomain,
  hashStruct,
  hashTypedData,
  keccak256,
  parseSignature,
  recoverTypedDataAddress,
  serializeSignature,
  toHex,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { x402Client, x402HTTPClient } from "@x402/core/client";
import { encodePaymentSignatureHeader } from "@x402/core/http";
import { ExactEvmScheme, toClientEvmSigner } from "@x402/evm";
import { preparePaymentHeader, signPaymentHeader } from "x402/client";
import { exact as legacyExact } from "x402/schemes";

const NOW = 1800000000;
const KEY0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const KEY1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const acct0 = privateKeyToAccount(KEY0);
const acct1 = privateKeyToAccount(KEY1);
const PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const OTHER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

// The offer the tests build through x402_offer_create.
const offer = [
  {
    scheme: "exact", network: "eip155:84532", v1_network: "base-sepolia",
    chainId: 84532, amount: "1000",
    asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e", payTo: PAY_TO,
    maxTimeoutSeconds: 300, extra: { name: "USDC", version: "2" },
  },
  {
    scheme: "exact", network: "eip155:8453", v1_network: "base",
    chainId: 8453, amount: "2500",
    asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", payTo: PAY_TO,
    maxTimeoutSeconds: 60, extra: { name: "USD Coin", version: "2" },
  },
];
const RESOURCE = { url: "http://localhost:4021/protected", description: "", mimeType: "" };

const types = {
  TransferWithAuthorization: [
    { name: "from", type: "address" },
    { name: "to", type: "address" },
    { name: "value", type: "uint256" },
    { name: "validAfter", type: "uint256" },
    { name: "validBefore", type: "uint256" },
    { name: "nonce", type: "bytes32" },
  ],
};

function accepted(req) {
  return {
    scheme: req.scheme, network: req.network, amount: req.amount,
    asset: req.asset, payTo: req.payTo,
    maxTimeoutSeconds: req.maxTimeoutSeconds, extra: { ...req.extra },
  };
}

function domainOf(req) {
  return { name: req.extra.name, version: req.extra.version,
           chainId: req.chainId, verifyingContract: req.asset };
}

function message(auth) {
  return { from: auth.from, to: auth.to, value: BigInt(auth.value),
           validAfter: BigInt(auth.validAfter),
           validBefore: BigInt(auth.validBefore), nonce: auth.nonce };
}

function baseAuth(name, over = {}) {
  return {
    from: acct0.address, to: PAY_TO, value: "1000",
    validAfter: String(NOW - 600), validBefore: String(NOW + 300),
    nonce: keccak256(toHex(`x402-vector-${name}`)), ...over,
  };
}

async function sign(account, domain, auth) {
  return account.signTypedData({ domain, types,
    primaryType: "TransferWithAuthorization", message: message(auth) });
}

function digestOf(domain, auth) {
  return hashTypedData({ domain, types, primaryType: "TransferWithAuthorization",
                         message: message(auth) });
}

function b64(s) {
  return Buffer.from(s, "utf8").toString("base64");
}

function v2Header(auth, signature, acc, extra = {}) {
  return encodePaymentSignatureHeader({
    x402Version: 2, payload: { authorization: auth, signature },
    resource: RESOURCE, accepted: acc, ...extra,
  });
}

function v1Header(auth, signature, network = "base-sepolia", scheme = "exact") {
  const payment = { x402Version: 1, scheme, network, payload: { signature, authorization: auth } };
  // The legacy encoder refuses networks it does not know; the same bytes
  // by hand for those negatives.
  try {
    return legacyExact.evm.encodePayment(payment);
  } catch {
    return b64(JSON.stringify(payment));
  }
}

function paymentId(req, from, nonce) {
  return keccak256(encodePacked(["uint256", "address", "address", "bytes32"],
    [BigInt(req.chainId), req.asset, from, nonce])).slice(2);
}

const vectors = [];

// A vector expected to decode and verify to `expect` against `offer`.
function add(name, header, version, expect, extra = {}) {
  vectors.push({ name, header, version_hint: version, decode: true, ...expect, ...extra });
}

function okExpect(reqIndex, auth, more = {}) {
  return { ok: true, reason: null, signature_unchecked: false, requirement: reqIndex,
           payer: getAddress(auth.from), payment_id: paymentId(offer[reqIndex], auth.from, auth.nonce),
           ...more };
}

function bad(reason, more = {}) {
  return { ok: false, reason, signature_unchecked: false, ...more };
}

function decodeFail(name, header, version, reason) {
  vectors.push({ name, header, version_hint: version, decode: false, ok: false, reason });
}

// Deterministic randomness and clock for the official clients.
function withFixedEnv(seed, fn) {
  const realNow = Date.now;
  const realRandom = globalThis.crypto.getRandomValues.bind(globalThis.crypto);
  Date.now = () => NOW * 1000;
  globalThis.crypto.getRandomValues = (arr) => {
    const bytes = Buffer.from(keccak256(toHex(seed)).slice(2), "hex");
    for (let i = 0; i < arr.length; i++) arr[i] = bytes[i % 32];
    return arr;
  };
  return Promise.resolve(fn()).finally(() => {
    Date.now = realNow;
    globalThis.crypto.getRandomValues = realRandom;
  });
}

const reqA = offer[0];
const reqB = offer[1];
const domA = domainOf(reqA);

// ---- the fixed vector (checked byte for byte in the core's tests) ----
const n91auth = {
  from: acct0.address, to: PAY_TO, value: "1000", validAfter: "1700000000",
  validBefore: "1900000000", nonce: keccak256(toHex("x402-test-vector-1")),
};
const n91sig = await sign(acct0, domA, n91auth);
const notes91 = {
  domainSeparator: hashDomain({ domain: domA, types: { EIP712Domain: [
    { name: "name", type: "string" }, { name: "version", type: "string" },
    { name: "chainId", type: "uint256" }, { name: "verifyingContract", type: "address" }] } }),
  structHash: hashStruct({ data: message(n91auth), primaryType: "TransferWithAuthorization", types }),
  digest: digestOf(domA, n91auth),
  signature: n91sig,
  signer: acct0.address,
};
add("notes91_v2", v2Header(n91auth, n91sig, accepted(reqA)), 2, okExpect(0, n91auth));
add("notes91_v1", v1Header(n91auth, n91sig), 1, okExpect(0, n91auth));

// ---- valid payments from the official clients ----
{
  const paymentRequired = { x402Version: 2, error: "Payment required", resource: RESOURCE,
                            accepts: [accepted(reqA), accepted(reqB)] };
  for (const [i, acct, tag] of [[0, acct0, "key0"], [1, acct1, "key1"]]) {
    const client = new x402Client((v, accepts) => accepts[i]);
    client.register("eip155:*", new ExactEvmScheme(toClientEvmSigner(acct)));
    const payload = await withFixedEnv(`client-${tag}`, () => client.createPaymentPayload(paymentRequired));
    const header = new x402HTTPClient(client).encodePaymentSignatureHeader(payload)["PAYMENT-SIGNATURE"];
    add(`v2_official_client_${tag}_req${i}`, header, 2, okExpect(i, payload.payload.authorization),
        { digest: digestOf(domainOf(offer[i]), payload.payload.authorization) });
  }
}
{
  // Legacy v1 client: prepare, fix the random/time fields, sign, encode.
  const reqV1 = { scheme: "exact", network: "base-sepolia", maxAmountRequired: "1000",
                  resource: RESOURCE.url, description: "", mimeType: "", payTo: PAY_TO,
                  maxTimeoutSeconds: 300, asset: reqA.asset, extra: { ...reqA.extra } };
  const unsigned = preparePaymentHeader(acct1.address, 1, reqV1);
  const auth = unsigned.payload.authorization;
  auth.nonce = keccak256(toHex("x402-vector-legacy-v1"));
  auth.validAfter = String(NOW - 600);
  auth.validBefore = String(NOW + 300);
  // The legacy client returns the encoded X-PAYMENT value itself.
  const header = await signPaymentHeader(acct1, reqV1, unsigned);
  const sent = legacyExact.evm.decodePayment(header).payload.authorization;
  add("v1_legacy_client_key1", header, 1, okExpect(0, sent), { digest: digestOf(domA, sent) });
}

// ---- valid edge cases ----
{
  const auth = baseAuth("boundary-before", { validBefore: String(NOW + 6) });
  add("v2_valid_before_exactly_now_plus_6", v2Header(auth, await sign(acct0, domA, auth), accepted(reqA)), 2, okExpect(0, auth));
}
{
  const auth = baseAuth("boundary-after", { validAfter: String(NOW) });
  add("v2_valid_after_exactly_now", v2Header(auth, await sign(acct0, domA, auth), accepted(reqA)), 2, okExpect(0, auth));
}
{
  const auth = baseAuth("far-future", { validBefore: (2n ** 256n - 1n).toString() });
  add("v2_valid_before_max_uint256", v2Header(auth, await sign(acct0, domA, auth), accepted(reqA)), 2, okExpect(0, auth));
}
{
  const auth = baseAuth("lowercase", { to: PAY_TO.toLowerCase(), from: acct0.address.toLowerCase() });
  const acc = accepted(reqA);
  acc.payTo = acc.payTo.toLowerCase();
  acc.asset = acc.asset.toUpperCase().replace("0X", "0x");
  add("v2_addresses_in_other_case", v2Header(auth, await sign(acct0, domA, auth), acc), 2, okExpect(0, auth));
}
{
  const auth = baseAuth("extensions");
  add("v2_with_extensions", v2Header(auth, await sign(acct0, domA, auth), accepted(reqA),
      { extensions: { bazaar: { info: { input: { type: "http", method: "GET" } } } } }), 2, okExpect(0, auth));
}
{
  const auth = baseAuth("v1-base", { value: "2500", validBefore: String(NOW + 60) });
  add("v1_second_requirement", v1Header(auth, await sign(acct0, domainOf(reqB), auth), "base"), 1, okExpect(1, auth));
}

// ---- signature negatives ----
{
  const auth = baseAuth("high-s");
  const sig = parseSignature(await sign(acct0, domA, auth));
  const s = BigInt(sig.s);
  const twin = serializeSignature({ r: sig.r, s: toHex(N - s, { size: 32 }), yParity: 1 - sig.yParity });
  const rec = await recoverTypedDataAddress({ domain: domA, types, primaryType: "TransferWithAuthorization",
                                              message: message(auth), signature: twin });
  if (rec !== acct0.address) throw new Error("high-s twin does not recover");
  add("v2_high_s_twin", v2Header(auth, twin, accepted(reqA)), 2, bad("invalid_exact_evm_payload_signature"));
}
for (const v of [0, 1]) {
  const auth = baseAuth(`v${v}`);
  const sig = await sign(acct0, domA, auth);
  const raw = sig.slice(0, 130) + toHex(Number(BigInt("0x" + sig.slice(130))) - 27, { size: 1 }).slice(2);
  add(`v2_v_is_${v}_form`, v2Header(auth, raw, accepted(reqA)), 2, bad("invalid_exact_evm_payload_signature"));
}
for (const [name, dom] of [
  ["wrong_domain_name", { ...domA, name: "USD Coin" }],
  ["wrong_domain_version", { ...domA, version: "1" }],
  ["wrong_chain_id", { ...domA, chainId: 8453 }],
  ["wrong_verifying_contract", { ...domA, verifyingContract: reqB.asset }],
]) {
  const auth = baseAuth(name);
  add(`v2_${name}`, v2Header(auth, await sign(acct0, dom, auth), accepted(reqA)), 2, bad("invalid_exact_evm_payload_signature"));
}
for (const [name, field, signedValue, sentValue] of [
  ["tampered_value", "value", "999", "1000"],
  ["tampered_to", "to", OTHER, PAY_TO],
  ["tampered_nonce", "nonce", keccak256(toHex("a")), keccak256(toHex("b"))],
  ["tampered_from", "from", acct0.address, acct1.address],
  ["tampered_valid_before", "validBefore", String(NOW + 100), String(NOW + 200)],
]) {
  const auth = baseAuth(name, { [field]: signedValue });
  const sig = await sign(acct0, domA, auth);
  const sent = { ...auth, [field]: sentValue };
  add(`v2_${name}`, v2Header(sent, sig, accepted(reqA)), 2, bad("invalid_exact_evm_payload_signature"));
}
for (const [i, bit] of [[0, 0x01], [40, 0x80], [63, 0x01]]) {
  const auth = baseAuth(`flip-${i}`);
  const sig = await sign(acct0, domA, auth);
  const bytes = Buffer.from(sig.slice(2), "hex");
  bytes[i] ^= bit;
  add(`v2_flipped_signature_byte_${i}`, v2Header(auth, "0x" + bytes.toString("hex"), accepted(reqA)), 2,
      bad("invalid_exact_evm_payload_signature"));
}
{
  const auth = baseAuth("signed-by-other");
  add("v2_signed_by_other_key", v2Header(auth, await sign(acct1, domA, auth), accepted(reqA)), 2,
      bad("invalid_exact_evm_payload_signature"));
}
{
  const auth = baseAuth("v1-tampered", { value: "999" });
  const sig = await sign(acct0, domA, auth);
  add("v1_tampered_value", v1Header({ ...auth, value: "1000" }, sig), 1, bad("invalid_exact_evm_payload_signature"));
}

// ---- authorization rule negatives (properly signed) ----
{
  const auth = baseAuth("recipient", { to: OTHER });
  add("v2_recipient_mismatch", v2Header(auth, await sign(acct0, domA, auth), accepted(reqA)), 2,
      bad("invalid_exact_evm_payload_recipient_mismatch"));
  add("v1_recipient_mismatch", v1Header(auth, await sign(acct0, domA, auth)), 1,
      bad("invalid_exact_evm_payload_recipient_mismatch"));
}
for (const [name, value] of [["value_low", "999"], ["value_high", "1001"], ["value_padded", "01000"]]) {
  const auth = baseAuth(name, { value });
  const expect = value === "01000" ? okExpect(0, auth) : bad("invalid_exact_evm_payload_authorization_value_mismatch");
  add(`v2_${name}`, v2Header(auth, await sign(acct0, domA, auth), accepted(reqA)), 2, expect);
}
{
  const auth = baseAuth("v1-value", { value: "2000" });
  add("v1_value_mismatch", v1Header(auth, await sign(acct0, domA, auth)), 1,
      bad("invalid_exact_evm_payload_authorization_value_mismatch"));
}
for (const [name, over, reason] of [
  ["expired", { validBefore: String(NOW - 100) }, "invalid_exact_evm_payload_authorization_valid_before"],
  ["expires_within_margin", { validBefore: String(NOW + 5) }, "invalid_exact_evm_payload_authorization_valid_before"],
  ["not_yet_valid", { validAfter: String(NOW + 1) }, "invalid_exact_evm_payload_authorization_valid_after"],
  ["not_yet_valid_far", { validAfter: String(NOW + 86400), validBefore: String(NOW + 90000) },
   "invalid_exact_evm_payload_authorization_valid_after"],
]) {
  const auth = baseAuth(name, over);
  add(`v2_${name}`, v2Header(auth, await sign(acct0, domA, auth), accepted(reqA)), 2, bad(reason));
}
{
  const auth = baseAuth("v1-expired", { validBefore: String(NOW) });
  add("v1_expired", v1Header(auth, await sign(acct0, domA, auth)), 1,
      bad("invalid_exact_evm_payload_authorization_valid_before"));
}

// ---- matching negatives ----
for (const [name, change, reason] of [
  ["accepted_wrong_pay_to", (a) => { a.payTo = OTHER; }, "invalid_payment_requirements"],
  ["accepted_wrong_amount", (a) => { a.amount = "100"; }, "invalid_payment_requirements"],
  ["accepted_wrong_asset", (a) => { a.asset = reqB.asset; }, "invalid_payment_requirements"],
  ["accepted_wrong_max_timeout", (a) => { a.maxTimeoutSeconds = 60; }, "invalid_payment_requirements"],
  ["accepted_wrong_extra_name", (a) => { a.extra.name = "USD Coin"; }, "invalid_payment_requirements"],
  ["accepted_missing_extra", (a) => { delete a.extra; }, "invalid_payment_requirements"],
  ["accepted_wrong_network", (a) => { a.network = "eip155:137"; }, "invalid_network"],
  ["accepted_v1_network_name", (a) => { a.network = "base-sepolia"; }, "invalid_network"],
  ["accepted_scheme_upto", (a) => { a.scheme = "upto"; }, "unsupported_scheme"],
]) {
  const auth = baseAuth(name);
  const acc = accepted(reqA);
  change(acc);
  add(`v2_${name}`, v2Header(auth, await sign(acct0, domA, auth), acc), 2, bad(reason));
}
{
  const auth = baseAuth("v1-network");
  const sig = await sign(acct0, domA, auth);
  add("v1_unoffered_network", v1Header(auth, sig, "polygon"), 1, bad("invalid_network"));
  add("v1_caip2_network", v1Header(auth, sig, "eip155:84532"), 1, bad("invalid_network"));
  add("v1_scheme_upto", v1Header(auth, sig, "base-sepolia", "upto"), 1, bad("unsupported_scheme"));
}

// ---- smart wallets: not checkable locally ----
{
  const auth = baseAuth("erc6492");
  const inner = await sign(acct0, domA, auth);
  // abi.encode(factory, calldata, innerSig) ++ 0x6492 magic x16 (ERC-6492)
  const body = "00".repeat(12) + "ca11bde05977b3631167028862be2a173976ca11" +
               (96).toString(16).padStart(64, "0") + (160).toString(16).padStart(64, "0") +
               "4".padStart(64, "0") + "deadbeef" + "00".repeat(28) +
               "41".padStart(64, "0") + inner.slice(2) + "00".repeat(31);
  const sig = "0x" + body + "6492".repeat(16);
  add("v2_erc6492_signature_unchecked", v2Header(auth, sig, accepted(reqA)), 2,
      okExpect(0, auth, { signature_unchecked: true }));
  const expired = baseAuth("erc6492-expired", { validBefore: String(NOW) });
  add("v2_erc6492_expired", v2Header(expired, sig, accepted(reqA)), 2,
      bad("invalid_exact_evm_payload_authorization_valid_before"));
  const short = baseAuth("erc1271-64");
  add("v2_64_byte_signature_unchecked", v2Header(short, inner.slice(0, 130), accepted(reqA)), 2,
      okExpect(0, short, { signature_unchecked: true }));
}

// ---- decode failures ----
{
  const auth = baseAuth("decode");
  const sig = await sign(acct0, domA, auth);
  const good = { x402Version: 2, payload: { authorization: auth, signature: sig },
                 resource: RESOURCE, accepted: accepted(reqA) };
  const json = JSON.stringify(good);
  const goodB64 = b64(json);
  const mut = (f) => { const o = structuredClone(good); f(o); return b64(JSON.stringify(o)); };
  add("v2_decode_control", goodB64, 2, okExpect(0, auth));
  add("v2_missing_padding_tolerated", goodB64.replace(/=+$/, ""), 2, okExpect(0, auth));
  if (!/=$/.test(goodB64)) throw new Error("control vector needs padding");

  decodeFail("empty_header", "", 2, "invalid_payload");
  decodeFail("base64url_alphabet", b64(json + "  ").replace(/\+/g, "-").replace(/\//g, "_") + "-_", 2, "invalid_payload");
  decodeFail("base64_with_space", goodB64.slice(0, 40) + " " + goodB64.slice(40), 2, "invalid_payload");
  decodeFail("base64_bad_padding", goodB64.replace(/=+$/, "") + "===", 2, "invalid_payload");
  decodeFail("not_json", b64("not json at all"), 2, "invalid_payload");
  decodeFail("json_array", b64("[1,2,3]"), 2, "invalid_payload");
  decodeFail("json_trailing_garbage", b64(json + "x"), 2, "invalid_payload");
  decodeFail("duplicate_key", b64(json.replace('{"x402Version":2,', '{"x402Version":2,"x402Version":2,')), 2, "invalid_payload");
  decodeFail("too_deep", mut((o) => { let d = {}; const root = d; for (let i = 0; i < 20; i++) { d.a = {}; d = d.a; } o.extensions = root; }), 2, "invalid_payload");
  decodeFail("oversize_header", mut((o) => { o.extensions = { pad: "x".repeat(13000) }; }), 2, "invalid_payload");
  decodeFail("missing_version", mut((o) => { delete o.x402Version; }), 2, "invalid_x402_version");
  decodeFail("version_3", mut((o) => { o.x402Version = 3; }), 2, "invalid_x402_version");
  decodeFail("version_string", mut((o) => { o.x402Version = "2"; }), 2, "invalid_x402_version");
  decodeFail("v2_payload_in_x_payment", goodB64, 1, "invalid_x402_version");
  decodeFail("v1_payload_in_payment_signature", v1Header(auth, sig), 2, "invalid_x402_version");
  decodeFail("missing_accepted", mut((o) => { delete o.accepted; }), 2, "invalid_payload");
  decodeFail("missing_payload", mut((o) => { delete o.payload; }), 2, "invalid_payload");
  decodeFail("missing_authorization", mut((o) => { delete o.payload.authorization; }), 2, "invalid_payload");
  decodeFail("missing_signature", mut((o) => { delete o.payload.signature; }), 2, "invalid_payload");
  decodeFail("permit2_payload", mut((o) => { o.payload = { signature: sig, permit2Authorization: {} }; }), 2, "invalid_payload");
  decodeFail("permit2_method", mut((o) => { o.accepted.extra.assetTransferMethod = "permit2"; }), 2, "invalid_payload");
  decodeFail("nonce_31_bytes", mut((o) => { o.payload.authorization.nonce = auth.nonce.slice(0, 64); }), 2, "invalid_payload");
  decodeFail("nonce_without_0x", mut((o) => { o.payload.authorization.nonce = auth.nonce.slice(2); }), 2, "invalid_payload");
  decodeFail("nonce_not_hex", mut((o) => { o.payload.authorization.nonce = "0x" + "zz" + auth.nonce.slice(4); }), 2, "invalid_payload");
  decodeFail("value_as_number", mut((o) => { o.payload.authorization.value = 1000; }), 2, "invalid_payload");
  decodeFail("value_negative", mut((o) => { o.payload.authorization.value = "-1000"; }), 2, "invalid_payload");
  decodeFail("value_decimal_point", mut((o) => { o.payload.authorization.value = "1000.0"; }), 2, "invalid_payload");
  decodeFail("value_overflows_uint256", mut((o) => { o.payload.authorization.value = (2n ** 256n).toString(); }), 2, "invalid_payload");
  decodeFail("valid_before_as_number", mut((o) => { o.payload.authorization.validBefore = NOW + 300; }), 2, "invalid_payload");
  decodeFail("from_short", mut((o) => { o.payload.authorization.from = acct0.address.slice(0, 41); }), 2, "invalid_payload");
  decodeFail("to_not_hex", mut((o) => { o.payload.authorization.to = "0x" + "g".repeat(40); }), 2, "invalid_payload");
  decodeFail("signature_odd_hex", mut((o) => { o.payload.signature = sig.slice(0, 131); }), 2, "invalid_payload");
  decodeFail("signature_empty", mut((o) => { o.payload.signature = "0x"; }), 2, "invalid_payload");
  decodeFail("signature_number", mut((o) => { o.payload.signature = 5; }), 2, "invalid_payload");
  decodeFail("max_timeout_string", mut((o) => { o.accepted.maxTimeoutSeconds = "300"; }), 2, "invalid_payload");
  decodeFail("resource_string", mut((o) => { o.resource = "http://x/"; }), 2, "invalid_payload");
  decodeFail("v1_missing_network", b64(JSON.stringify({ x402Version: 1, scheme: "exact",
    payload: { signature: sig, authorization: auth } })), 1, "invalid_payload");
}

const out = {
  generator: "js/vectors/gen-vectors.mjs (viem, @x402/core, @x402/evm, legacy x402)",
  now: NOW,
  offer,
  notes91,
  vectors,
};
const path = fileURLToPath(new URL("../../src/core/tests/data/vectors.json", import.meta.url));
writeFileSync(path, JSON.stringify(out, null, 1) + "\n");
console.log(`${vectors.length} vectors -> ${path}`);
