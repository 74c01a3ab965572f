#!/usr/bin/env node
/*
 * Build one payment from the catalogue of vectors.mjs for a URL's own 402
 * and optionally send it: the negative paths the official clients will not
 * walk (expired, tampered, ...).
 *
 *   node js/interop/forge.mjs --run-dir DIR --url URL --vector expired
 *        [--version 2|1] [--account payer] [--send] [--times N]
 *
 * Prints JSON {id, headerName, header, payload, requirement} and, with
 * --send, `responses`: [{status, error, settlement}] for each of N sends
 * of the same header (N > 1 is a replay).
 */
import { resolve } from "node:path";
import { fetchRequirements } from "./payments.mjs";
import { makeVectors } from "./vectors.mjs";
import { sendToTarget } from "./conformance.mjs";
import { parseArgs, readChainState } from "./lib.mjs";

async function main() {
  const args = parseArgs(process.argv.slice(2), ["send"]);
  const chain = readChainState(resolve(args["run-dir"] || "run"));
  const version = Number(args.version || 2);
  const required = await fetchRequirements(args.url);
  if (required.status !== 402) throw new Error(`${args.url}: no 402 (${required.status})`);
  const payer = chain.accounts[args.account || "payer"].key;
  const keys = { payer, payer2: chain.accounts.payer2.key, poor: chain.accounts.poor.key };
  const vs = await makeVectors(required, keys, { only: [args.vector || "valid"] });
  const v = vs.find((x) => x.version === version);
  if (!v) throw new Error(`no vector ${args.vector} for v${version}`);
  const out = { id: v.id, kind: v.kind, headerName: v.headerName, header: v.header,
    payload: v.payload, requirement: v.requirement };
  if (args.send) {
    out.responses = [];
    for (let i = 0; i < Number(args.times || 1); i++) {
      out.responses.push(await sendToTarget(args.url, v));
    }
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(`forge: ${e.message}`);
  process.exit(2);
});
