#!/usr/bin/env node
/*
 * Pay a URL with the official x402 v2 client, unmodified: @x402/fetch
 * wrapFetchWithPayment over an x402Client with @x402/evm's exact scheme
 * (v2 for eip155:*, plus the v1 scheme for base-sepolia, as the official
 * e2e clients register both).
 *
 *   node js/interop/client-v2.mjs --url URL --run-dir DIR [--account payer] [--pretty]
 *   node js/interop/client-v2.mjs --url URL --key 0x...
 *
 * Prints one JSON report (status, body, the 402, the payment sent, the
 * decoded settlement header, every exchange). Exit 0 when a request was
 * made, whatever its status; 2 on a usage error or when the client throws.
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { privateKeyToAccount } from "viem/accounts";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { ExactEvmSchemeV1 } from "@x402/evm/exact/v1/client";
import { clientArgs, pkgVersion, printReport, recordingFetch, report } from "./client-common.mjs";

async function main() {
  const args = clientArgs(process.argv.slice(2));
  const account = privateKeyToAccount(args.key);
  const client = new x402Client()
    .register("eip155:*", new ExactEvmScheme(account))
    .registerV1("base-sepolia", new ExactEvmSchemeV1(account));
  const log = [];
  const pay = wrapFetchWithPayment(recordingFetch(log), client);
  const t0 = Date.now();
  const name = `@x402/fetch ${pkgVersion("@x402/fetch")}`;
  let res = null;
  let error;
  try {
    res = await pay(args.url, { method: args.method || "GET" });
  } catch (e) {
    error = e.message;
  }
  const out = await report(name, args.url, log, res, t0,
    { payer: account.address, ...(error ? { error } : {}) });
  printReport(out, args.pretty);
  if (error && !res) process.exitCode = 2;
}

main().catch((e) => {
  console.error(`client-v2: ${e.message}`);
  process.exit(2);
});
