#!/usr/bin/env node
/*
 * Token balances read from the chain.
 *
 *   node js/interop/balances.mjs --run-dir DIR [--pretty] [ADDR|NAME ...]
 *
 * Default: the payer accounts and payTo of DIR/chain.json. Prints JSON
 * {block, balances: {name: atomic}, addresses: {name: address}}.
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { getAddress } from "viem";
import { USDC_ADDRESS, erc20Abi, formatUnits6, parseArgs, publicClient,
  readChainState } from "./lib.mjs";

export async function readBalances(chain, who) {
  const pc = publicClient(chain.rpcUrl);
  const names = who.length ? who : ["payer", "payer2", "poor", "payTo"];
  const addresses = {};
  for (const n of names) {
    if (n === "payTo") addresses[n] = chain.payTo;
    else if (chain.accounts[n]) addresses[n] = chain.accounts[n].address;
    else addresses[n] = getAddress(n);
  }
  const block = await pc.getBlockNumber();
  const balances = {};
  for (const [n, a] of Object.entries(addresses)) {
    balances[n] = (await pc.readContract({ address: USDC_ADDRESS, abi: erc20Abi,
      functionName: "balanceOf", args: [a], blockNumber: block })).toString();
  }
  return { block: block.toString(), balances, addresses };
}

async function main() {
  const args = parseArgs(process.argv.slice(2), ["pretty"]);
  const chain = readChainState(args["run-dir"] || process.env.X402_RUN_DIR || "run");
  const out = await readBalances(chain, args._);
  if (args.pretty) {
    for (const [n, v] of Object.entries(out.balances)) {
      console.log(`  ${n.padEnd(8)} ${out.addresses[n]}  ${formatUnits6(v).padStart(14)} USDC`);
    }
  } else {
    console.log(JSON.stringify(out));
  }
}

if (process.argv[1] && process.argv[1].endsWith("balances.mjs")) {
  main().catch((e) => {
    console.error(`balances: ${e.message}`);
    process.exit(2);
  });
}
