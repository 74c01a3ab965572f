#!/usr/bin/env node
/*
 * Pay a URL with the official legacy x402 v1 client, unmodified:
 * x402-fetch wrapFetchWithPayment with a viem wallet client on chain 84532
 * (which x402-fetch maps to "base-sepolia"). It reads the 402's JSON body,
 * sends X-PAYMENT and expects X-PAYMENT-RESPONSE.
 *
 *   node js/interop/client-v1.mjs --url URL --run-dir DIR [--account payer] [--pretty]
 *
 * Same report and exit codes as client-v2.mjs.
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { createWalletClient, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { wrapFetchWithPayment } from "x402-fetch";
import { chainDef } from "./lib.mjs";
import { clientArgs, pkgVersion, printReport, recordingFetch, report } from "./client-common.mjs";

async function main() {
  const args = clientArgs(process.argv.slice(2));
  const account = privateKeyToAccount(args.key);
  /* Signing is local; the transport is never used by the client. */
  const rpc = args.rpc || "http://127.0.0.1:9";
  const wallet = createWalletClient({ account, chain: chainDef(rpc), transport: http(rpc) });
  const log = [];
  /* maxValue: the legacy default is 0.10 USDC; allow up to 1 USDC here. */
  const pay = wrapFetchWithPayment(recordingFetch(log), wallet,
    BigInt(args["max-value"] || 1000000));
  const t0 = Date.now();
  const name = `x402-fetch ${pkgVersion("x402-fetch")}`;
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
  console.error(`client-v1: ${e.message}`);
  process.exit(2);
});
