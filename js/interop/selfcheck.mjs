#!/usr/bin/env node
/*
 * The money path WITHOUT nginx: local chain + token, the official
 * facilitator, the official clients, and the reference server built on the
 * official server code. If this passes, the infrastructure is right and any
 * failure of the nginx interop tests is the module's.
 *
 *   node js/interop/selfcheck.mjs [--run-dir DIR] [--keep]
 *
 * Exit 0 when every check passed. Prints one line per check and timings.
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { startChain } from "./chain.mjs";
import { readBalances } from "./balances.mjs";
import { checkTx } from "./tx.mjs";
import { runConformance } from "./conformance.mjs";
import { startReferenceServer } from "./reference-server.mjs";
import { freePort, parseArgs, readJson, stopPid } from "./lib.mjs";

const run = promisify(execFile);
const HERE = new URL(".", import.meta.url).pathname;
let failed = 0;
let checks = 0;

function check(ok, what, detail = "") {
  checks++;
  if (!ok) failed++;
  console.log(`${ok ? "ok" : "not ok"} ${checks} - ${what}${!ok && detail ? `  # ${detail}` : ""}`);
}

async function node(script, args) {
  const { stdout } = await run(process.execPath, [join(HERE, script), ...args],
    { maxBuffer: 16 << 20 });
  return stdout;
}

async function pay(client, runDir, url, account = "payer") {
  const out = await node(client, ["--run-dir", runDir, "--url", url, "--account", account]);
  return JSON.parse(out);
}

async function main() {
  const args = parseArgs(process.argv.slice(2), ["keep"]);
  const runDir = resolve(args["run-dir"] || mkdtempSync(join(tmpdir(), "x402-selfcheck-")));
  const times = {};
  let t = Date.now();
  const chain = await startChain(runDir, { fund: "10" });
  times.chain = Date.now() - t;
  let fac;
  let server;
  try {
    t = Date.now();
    await node("facilitator.mjs", ["start", "--run-dir", runDir]);
    fac = readJson(join(runDir, "facilitator.json"));
    times.facilitator = Date.now() - t;
    const port = await freePort();
    server = await startReferenceServer({ facilitatorUrl: fac.url, payTo: chain.payTo, port });
    const base = `http://127.0.0.1:${port}`;
    console.log(`# run dir ${runDir}: anvil ${chain.rpcUrl}, facilitator ${fac.url}, reference ${base}`);

    t = Date.now();
    for (const [client, path, price] of [["client-v2.mjs", "/v2/paid", 1000n],
      ["client-v1.mjs", "/v1/paid", 1000n]]) {
      const before = await readBalances(chain, ["payer", "payTo"]);
      const r = await pay(client, runDir, base + path);
      const after = await readBalances(chain, ["payer", "payTo"]);
      const tag = `${client} ${path}`;
      check(r.status === 200, `${tag}: 200 after paying`, `status ${r.status} ${r.error ?? ""}`);
      check(r.exchanges[0]?.response?.status === 402, `${tag}: first answer was 402`);
      check(r.settlement?.success === true && /^0x[0-9a-f]{64}$/.test(r.settlement?.transaction ?? ""),
        `${tag}: settlement header success with a tx hash`, JSON.stringify(r.settlement));
      if (r.settlement?.transaction) {
        const tx = await checkTx(chain, r.settlement.transaction);
        check(tx.found && tx.status === "success" && tx.transfers.some((x) =>
          x.value === price.toString() && x.to.toLowerCase() === chain.payTo.toLowerCase()),
        `${tag}: settlement tx on chain with the Transfer`, JSON.stringify(tx));
      }
      check(BigInt(before.balances.payer) - BigInt(after.balances.payer) === price,
        `${tag}: payer down by exactly the price`);
      check(BigInt(after.balances.payTo) - BigInt(before.balances.payTo) === price,
        `${tag}: payTo up by exactly the price`);
    }
    times.clients = Date.now() - t;

    t = Date.now();
    for (const [client, path] of [["client-v2.mjs", "/v2/paid"], ["client-v1.mjs", "/v1/paid"]]) {
      const before = await readBalances(chain, ["poor", "payTo"]);
      const r = await pay(client, runDir, base + path, "poor");
      const after = await readBalances(chain, ["poor", "payTo"]);
      check(r.status === 402 && !r.settlement?.success,
        `${client} ${path}: insufficient balance -> 402`, `status ${r.status}`);
      check(before.balances.payTo === after.balances.payTo, `${client} ${path}: no tokens moved`);
    }
    const jobs = [];
    for (const path of ["/v2/paid", "/v1/paid"]) {
      const version = path.startsWith("/v2") ? 2 : 1;
      jobs.push({ url: base + path, version, vector: "expired", send: true },
        { url: base + path, version, vector: "valid", send: true, times: 2 });
    }
    const before = await readBalances(chain, ["payTo"]);
    const outs = JSON.parse(await node("forge.mjs", ["--run-dir", runDir, "--batch",
      JSON.stringify(jobs)]));
    const after = await readBalances(chain, ["payTo"]);
    for (const [i, o] of outs.entries()) {
      const path = new URL(jobs[i].url).pathname;
      if (jobs[i].vector === "expired") {
        check(o.responses[0].status === 402, `${path}: expired authorization -> 402`,
          JSON.stringify(o.responses[0]));
      } else {
        check(o.responses[0].status === 200 && o.responses[1].status === 402,
          `${path}: reused authorization after settlement -> 402`, JSON.stringify(o.responses));
      }
    }
    check(BigInt(after.balances.payTo) - BigInt(before.balances.payTo) === 2000n,
      "only the first use of each authorization moved tokens, expired ones none");
    times.negative = Date.now() - t;

    t = Date.now();
    for (const path of ["/v2/paid", "/v1/paid"]) {
      const results = await runConformance({ runDir, url: base + path, localCheck: false });
      const bad = results.filter((r) => !r.ok);
      check(bad.length === 0, `${path}: ${results.length} conformance vectors agree with the facilitator`,
        bad.map((b) => `${b.id}: ${b.failures.join(",")}`).join(" | "));
    }
    times.conformance = Date.now() - t;
  } finally {
    if (server) server.close();
    if (!args.keep) {
      if (fac) await stopPid(fac.pid);
      await stopPid(chain.pid);
    }
  }
  console.log(`1..${checks}`);
  console.log(`# timings (ms): ${JSON.stringify(times)}`);
  /* a run dir of our own making goes, unless something failed */
  if (!args["run-dir"] && !args.keep && !failed) {
    rmSync(runDir, { recursive: true, force: true });
  }
  if (failed) {
    console.log(`# ${failed} of ${checks} checks failed`);
    process.exitCode = 1;
  }
}

main().catch((e) => {
  console.error(`selfcheck: ${e.stack || e.message}`);
  process.exit(2);
});
