#!/usr/bin/env node
/*
 * Pay one nginx location offering several options (issue 12, x402_accept)
 * through each option with the official clients, and check the chains:
 * chain A (Base Sepolia's id, TestUSDC and TestEURC) and chain B (a second
 * anvil, id 31338, TestUSDC), each with its own official facilitator behind
 * the option's facilitator= location. For each (chain, token) the official
 * v2 client (@x402/fetch over an x402Client whose policy keeps that option
 * only) pays; the legacy v1 client (x402-fetch) pays the option it picks
 * from the v1 body. After each payment the payee's and the payer's
 * balances move by exactly that option's price on that (chain, token) and
 * nowhere else.
 *
 *   node js/interop/several-pay.mjs --url URL --run-dir-a A --run-dir-b B
 *        --prices 1000,2000,3000     TAP-like; exit 1 on failure
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { spawnSync } from "node:child_process";
import { getAddress } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { TOKENS, artifact, parseArgs, publicClient, readChainState } from "./lib.mjs";

let n = 0;
let failed = 0;
function check(ok, what, detail = "") {
  n++;
  if (!ok) failed++;
  console.log(`${ok ? "ok" : "not ok"} ${n} - ${what}${!ok && detail ? `  # ${detail}` : ""}`);
}

const str = (x) => JSON.stringify(x, (_, v) => (typeof v === "bigint" ? String(v) : v));

async function main() {
  const args = parseArgs(process.argv.slice(2), []);
  const a = readChainState(args["run-dir-a"]);
  const b = readChainState(args["run-dir-b"]);
  const prices = String(args.prices).split(",").map((p) => BigInt(p));
  const pairs = [[a, "usdc"], [a, "eurc"], [b, "usdc"]];
  const payer = privateKeyToAccount(a.accounts.payer.key);
  const payTo = getAddress(a.payTo);

  const balance = (chain, key, who) => publicClient(chain.rpcUrl, chain.chainId)
    .readContract({ address: TOKENS[key].address, abi: artifact(TOKENS[key].artifact).abi,
      functionName: "balanceOf", args: [who] });
  const snapshot = async () => Promise.all(pairs.map(async ([c, k]) => [
    await balance(c, k, payer.address), await balance(c, k, payTo)]));
  const moved = (before, after) => pairs.map((_, j) =>
    [after[j][0] - before[j][0], after[j][1] - before[j][1]]);
  const expect = (i) => pairs.map((_, j) => (j === i ? [-prices[i], prices[i]] : [0n, 0n]));

  /* v2: the official client, one option at a time by its own policy */
  for (const [i, [chain, key]] of pairs.entries()) {
    const tok = TOKENS[key];
    const what = `@x402/fetch pays ${tok.name} on ${chain.network}`;
    const client = new x402Client()
      .register("eip155:*", new ExactEvmScheme(payer))
      .registerPolicy((v, reqs) => reqs.filter((r) => r.network === chain.network
        && r.asset.toLowerCase() === tok.address.toLowerCase()));
    /* EURC and a chain outside the tables are not @x402/evm default assets */
    client.setSpendControls(false);
    const pay = wrapFetchWithPayment(fetch, client);
    const before = await snapshot();
    let res;
    try {
      res = await pay(args.url);
    } catch (e) {
      check(false, `${what}: paid`, e.message);
      continue;
    }
    const body = await res.text();
    check(res.status === 200, `${what}: 200 and the content`, `${res.status} ${body}`);
    const pr = res.headers.get("payment-response");
    let settle = null;
    try {
      settle = JSON.parse(Buffer.from(pr || "", "base64").toString());
    } catch {
      settle = null;
    }
    check(settle?.success === true && settle.network === chain.network,
      `${what}: PAYMENT-RESPONSE names ${chain.network}`, str(settle));
    check(res.headers.get("x-paid") === `${chain.network} ${tok.address}`,
      `${what}: $x402_network $x402_asset`, res.headers.get("x-paid"));
    const after = await snapshot();
    check(str(moved(before, after)) === str(expect(i)),
      `${what}: balances move by exactly ${prices[i]} there and nowhere else`,
      str(moved(before, after)));
  }

  /* v1: the legacy client reads the v1 body (Base Sepolia options only) */
  const before = await snapshot();
  const r = spawnSync("node", [new URL("./client-v1.mjs", import.meta.url).pathname,
    "--url", args.url, "--run-dir", args["run-dir-a"]], { encoding: "utf8" });
  let rep = null;
  try {
    rep = JSON.parse(r.stdout);
  } catch {
    rep = null;
  }
  check(rep?.status === 200, "x402-fetch (v1) pays: 200", r.stdout.slice(0, 400) + r.stderr);
  const v1 = await (await fetch(args.url)).json();
  check(str(v1.accepts.map((x) => `${x.network} ${x.asset}`))
    === str([`base-sepolia ${TOKENS.usdc.address}`, `base-sepolia ${TOKENS.eurc.address}`]),
  "the v1 body lists the two options with a v1 network name",
  str(v1.accepts.map((x) => `${x.network} ${x.asset}`)));
  const after = await snapshot();
  const m = moved(before, after);
  const j = m.findIndex(([p]) => p !== 0n);
  check(j >= 0 && j < 2 && str(m) === str(expect(j)),
    `x402-fetch (v1): balances move by exactly the price of the option it chose, on chain A`,
    str(m));

  console.log(`1..${n}`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(`several-pay.mjs: ${e.stack || e.message}`);
  process.exit(1);
});
