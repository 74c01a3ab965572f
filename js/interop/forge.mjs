#!/usr/bin/env node
/*
 * Build one payment from the catalogue of vectors.mjs for a URL's own 402
 * and optionally send it: the negative paths the official clients will not
 * walk (expired, tampered, ...).
 *
 *   node js/interop/forge.mjs --run-dir DIR --url URL --vector expired
 *        [--version 2|1] [--account payer] [--send] [--times N]
 *   node js/interop/forge.mjs --run-dir DIR --batch '[{"url":..,"vector":..,
 *        "version":2,"send":true,"times":2}, ...]'
 *
 * Prints JSON {id, headerName, header, payload, requirement} and, with
 * send, `responses`: [{status, error, settlement}] for each of N sends of
 * the same header (N > 1 is a replay). --batch runs several jobs in one
 * process (node start-up is the slow part) and prints a JSON array; a job
 * may say "parallel": true (the N sends at once) and "urls": [...] (sends
 * spread round-robin over several servers, e.g. a fleet).
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { resolve } from "node:path";
import { fetchRequirements } from "./payments.mjs";
import { makeVectors } from "./vectors.mjs";
import { sendToTarget } from "./conformance.mjs";
import { parseArgs, readChainState } from "./lib.mjs";

async function job(chain, j) {
  const version = Number(j.version || 2);
  const required = await fetchRequirements(j.url);
  if (required.status !== 402) throw new Error(`${j.url}: no 402 (${required.status})`);
  const acct = chain.accounts[j.account || "payer"];
  if (!acct) throw new Error(`unknown account ${j.account}`);
  const keys = { payer: acct.key, payer2: chain.accounts.payer2.key,
    poor: chain.accounts.poor.key };
  const vs = await makeVectors(required, keys, { only: [j.vector || "valid"] });
  const v = vs.find((x) => x.version === version);
  if (!v) throw new Error(`no vector ${j.vector} for v${version}`);
  const out = { id: v.id, url: j.url, kind: v.kind, headerName: v.headerName,
    header: v.header, payload: v.payload, requirement: v.requirement };
  if (j.send) {
    const urls = j.urls || [j.url];
    const n = Number(j.times || 1);
    if (j.parallel) {
      /* the same payment n times at once (round-robin over urls) */
      out.responses = await Promise.all(Array.from({ length: n },
        (_, i) => sendToTarget(urls[i % urls.length], v)));
    } else {
      out.responses = [];
      for (let i = 0; i < n; i++) {
        out.responses.push(await sendToTarget(urls[i % urls.length], v));
      }
    }
  }
  return out;
}

async function main() {
  const args = parseArgs(process.argv.slice(2), ["send"]);
  const chain = readChainState(resolve(args["run-dir"] || "run"));
  if (args.batch) {
    const jobs = JSON.parse(args.batch);
    const outs = [];
    for (const j of jobs) outs.push(await job(chain, j));
    console.log(JSON.stringify(outs));
    return;
  }
  console.log(JSON.stringify(await job(chain, { url: args.url, vector: args.vector,
    version: args.version, account: args.account, send: args.send, times: args.times })));
}

main().catch((e) => {
  console.error(`forge: ${e.message}`);
  process.exit(2);
});
