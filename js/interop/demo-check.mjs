#!/usr/bin/env node
/*
 * The demo's verdict on one paid request: print a paying client's JSON
 * report (client-v1/v2.mjs without --pretty) for a reader, then check that
 * the request was served: status 200 and exactly the expected content.
 *
 *   node js/interop/demo-check.mjs REPORT.json (--expect-file F | --expect-text T)
 *        [--quiet]
 *
 * Prints one last line `served <tx>` (the settlement transaction named by
 * the PAYMENT-RESPONSE header, or "-") or `NOT SERVED: <why> settled=<tx|->`
 * and exits 0 when served, 1 when not, 2 on bad usage.
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { readFileSync } from "node:fs";
import { printReport } from "./client-common.mjs";
import { parseArgs } from "./lib.mjs";

const args = parseArgs(process.argv.slice(2), ["quiet"]);
const file = args._[0];
if (!file || (!args["expect-file"] && args["expect-text"] === undefined)) {
  console.error("usage: demo-check.mjs REPORT.json (--expect-file F | --expect-text T) [--quiet]");
  process.exit(2);
}
const out = JSON.parse(readFileSync(file, "utf8"));
const want = args["expect-file"] ? readFileSync(args["expect-file"], "utf8")
  : args["expect-text"];
if (!args.quiet) printReport(out, true);

const tx = out.settlement?.transaction || "-";
const why = [];
if (out.status !== 200) why.push(`status ${out.status}, not 200`);
if (out.body !== want) {
  why.push(`body ${JSON.stringify((out.body ?? "").slice(0, 120))} is not the content `
    + `${JSON.stringify(want.slice(0, 120))}`);
}
if (out.error) why.push(`client error: ${out.error}`);
if (why.length === 0) {
  console.log(`served ${tx}`);
} else {
  console.log(`NOT SERVED: ${why.join("; ")} settled=${tx}`);
  process.exitCode = 1;
}
