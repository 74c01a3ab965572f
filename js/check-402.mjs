#!/usr/bin/env node
// Feeds a 402 of ours to the official x402 parsers and fails if any rejects
// it (issue 2, item 5):
//   v2: @x402/core decodePaymentRequiredHeader, the PaymentRequired zod
//       schema, x402Client requirement selection with the @x402/evm exact
//       scheme registered for eip155:*, and a signed payment payload built
//       from it (offline, fixed test key) whose `accepted` must equal the
//       selected requirement byte for byte after JSON.stringify;
//   v1: the legacy `x402` package's PaymentRequirementsSchema on every
//       accepts[] entry (what x402-fetch/x402-axios do), its
//       selectPaymentRequirements, and @x402/core's PaymentRequiredV1Schema.
//
// Usage:
//   node js/check-402.mjs HEADER_FILE BODY_FILE
//   node js/check-402.mjs < 402.json        # {"header": "...", "body": ...}
//   node js/check-402.mjs --batch < cases.json  # [{header, body, opts}, ...]:
//                                              # one line {rc, out} per case
// body may be a JSON string or an already-parsed object. Options:
//   --allow-empty-v1   a v1 body with no accepts[] is a warning, not an
//                      error (an offer only on networks legacy clients
//                      do not know).
//   --any-asset        turn off the v2 client's default spendControls,
//                      which refuse tokens outside @x402/evm DEFAULT_ASSETS
//                      (needed for a custom token such as the local
//                      chain's test token; without it a non-default asset
//                      fails selection, as it would for a default client).
// Exit status 0 when every parser accepts, 1 with the parser's message
// otherwise, 2 on bad usage.

import "./webcrypto.mjs"; // first: global crypto on Node 18
import { readFileSync } from "node:fs";

import { x402Client } from "@x402/core/client";
import { decodePaymentRequiredHeader } from "@x402/core/http";
import {
  PaymentRequiredV1Schema,
  PaymentRequiredV2Schema,
} from "@x402/core/schemas";
import { toClientEvmSigner } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { privateKeyToAccount } from "viem/accounts";
import { selectPaymentRequirements } from "x402/client";
import { PaymentRequirementsSchema } from "x402/types";

// Anvil/Hardhat account #0 (js/vectors/gen-vectors.mjs): a public test key.
const TEST_KEY =
  "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

function usage(msg) {
  process.stderr.write(`check-402: ${msg}\n`);
  process.exit(2);
}

function readInput(args) {
  const files = args.filter((a) => !a.startsWith("--"));
  if (files.length === 2) {
    return {
      header: readFileSync(files[0], "utf8").trim(),
      body: readFileSync(files[1], "utf8"),
    };
  }
  if (files.length !== 0) {
    usage("expected HEADER_FILE BODY_FILE, or JSON {header, body} on stdin");
  }
  let input;
  try {
    input = JSON.parse(readFileSync(0, "utf8"));
  } catch (e) {
    usage(`stdin is not JSON {header, body}: ${e.message}`);
  }
  if (typeof input.header !== "string" || input.body === undefined) {
    usage("stdin JSON needs a string `header` and a `body`");
  }
  return input;
}

function zodMessage(e) {
  if (e && Array.isArray(e.issues)) {
    return e.issues
      .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
      .join("; ");
  }
  return e && e.message ? e.message : String(e);
}

async function checkV2(header, anyAsset) {
  let pr;
  try {
    pr = decodePaymentRequiredHeader(header);
  } catch (e) {
    throw new Error(`decodePaymentRequiredHeader: ${e.message}`);
  }
  const parsed = PaymentRequiredV2Schema.safeParse(pr);
  if (!parsed.success) {
    throw new Error(`PaymentRequiredV2Schema: ${zodMessage(parsed.error)}`);
  }

  const signer = toClientEvmSigner(privateKeyToAccount(TEST_KEY));
  const client = new x402Client();
  client.register("eip155:*", new ExactEvmScheme(signer));
  if (anyAsset) {
    client.setSpendControls(false);
  }
  let selected;
  try {
    selected = client.selectPaymentRequirements(pr.x402Version, pr.accepts);
  } catch (e) {
    throw new Error(`x402Client.selectPaymentRequirements: ${e.message}`);
  }
  let payload;
  try {
    payload = await client.createPaymentPayload(pr);
  } catch (e) {
    throw new Error(`x402Client.createPaymentPayload: ${e.message}`);
  }
  // The TS server matches `accepted` by deep equality
  // (findMatchingRequirements, coinbase/x402 x402ResourceServer.ts).
  if (JSON.stringify(payload.accepted) !== JSON.stringify(selected)) {
    throw new Error(
      "payload.accepted differs from the selected requirement: " +
        `${JSON.stringify(payload.accepted)} vs ${JSON.stringify(selected)}`,
    );
  }
  const auth = payload.payload && payload.payload.authorization;
  if (!auth || auth.value !== selected.amount) {
    throw new Error(`signed value ${auth && auth.value} != ${selected.amount}`);
  }
  return {
    url: pr.resource.url,
    accepts: pr.accepts.length,
    selected: `${selected.network} ${selected.amount} ${selected.asset}`,
  };
}

function checkV1(bodyIn, allowEmpty) {
  let body = bodyIn;
  if (typeof body === "string") {
    try {
      body = JSON.parse(body);
    } catch (e) {
      throw new Error(`v1 body is not JSON: ${e.message}`);
    }
  }
  if (!body || typeof body !== "object" || body.x402Version !== 1) {
    throw new Error("v1 body: x402Version is not 1");
  }
  if (!Array.isArray(body.accepts)) {
    throw new Error("v1 body: accepts is not an array");
  }
  if (typeof body.error !== "string") {
    throw new Error("v1 body: error is not a string");
  }
  if (body.accepts.length === 0) {
    if (allowEmpty) {
      return { accepts: 0, warning: "no requirement for legacy clients" };
    }
    throw new Error("v1 body: accepts is empty (legacy clients cannot pay)");
  }
  // x402-fetch: accepts.map((x) => PaymentRequirementsSchema.parse(x))
  const reqs = body.accepts.map((x, i) => {
    const r = PaymentRequirementsSchema.safeParse(x);
    if (!r.success) {
      throw new Error(
        `legacy x402 PaymentRequirementsSchema, accepts[${i}]: ` +
          zodMessage(r.error),
      );
    }
    return r.data;
  });
  let selected;
  try {
    selected = selectPaymentRequirements(reqs, undefined, "exact");
  } catch (e) {
    throw new Error(`legacy selectPaymentRequirements: ${e.message}`);
  }
  if (!selected) {
    throw new Error("legacy selectPaymentRequirements selected nothing");
  }
  const core = PaymentRequiredV1Schema.safeParse(body);
  if (!core.success) {
    throw new Error(`@x402/core PaymentRequiredV1Schema: ${zodMessage(core.error)}`);
  }
  return {
    accepts: reqs.length,
    selected: `${selected.network} ${selected.maxAmountRequired}`,
  };
}

// one check: { rc, out } as the single-check command would exit and print
async function checkOne(header, body, allowEmpty, anyAsset) {
  const errors = [];
  const report = {};
  try {
    report.v2 = await checkV2(header, anyAsset);
  } catch (e) {
    errors.push(`v2: ${e.message}`);
  }
  try {
    report.v1 = checkV1(body, allowEmpty);
  } catch (e) {
    errors.push(`v1: ${e.message}`);
  }
  if (errors.length) return { rc: 1, out: errors.join("\n") + "\n" };
  return { rc: 0, out: JSON.stringify(report) + "\n" };
}

// --batch: stdin is a JSON array of {header, body, opts: [...]}; prints one
// JSON line {rc, out} per entry, in order (one node start for many checks:
// loading the parsers is most of a check's time)
async function batch() {
  let cases;
  try {
    cases = JSON.parse(readFileSync(0, "utf8"));
  } catch (e) {
    usage(`--batch: stdin is not a JSON array: ${e.message}`);
  }
  if (!Array.isArray(cases)) usage("--batch: stdin is not a JSON array");
  for (const c of cases) {
    const opts = Array.isArray(c.opts) ? c.opts : [];
    let r;
    if (typeof c.header !== "string" || c.body === undefined) {
      r = { rc: 2, out: "check-402: a case needs a string `header` and a `body`\n" };
    } else {
      try {
        r = await checkOne(c.header, c.body, opts.includes("--allow-empty-v1"),
                           opts.includes("--any-asset"));
      } catch (e) {
        r = { rc: 1, out: `check-402: ${e.stack || e}\n` };
      }
    }
    process.stdout.write(JSON.stringify(r) + "\n");
  }
}

async function main() {
  const args = process.argv.slice(2);
  if (args.includes("--batch")) return batch();
  const allowEmpty = args.includes("--allow-empty-v1");
  const anyAsset = args.includes("--any-asset");
  const { header, body } = readInput(args);
  const { rc, out } = await checkOne(header, body, allowEmpty, anyAsset);
  (rc ? process.stderr : process.stdout).write(out);
  if (rc) process.exit(rc);
}

main().catch((e) => {
  process.stderr.write(`check-402: ${e.stack || e}\n`);
  process.exit(1);
});
