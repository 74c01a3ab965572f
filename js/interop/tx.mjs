#!/usr/bin/env node
/*
 * Check a settlement transaction on the chain: its receipt, and the token
 * Transfer events it emitted.
 *
 *   node js/interop/tx.mjs --run-dir DIR [--pretty] 0xHASH
 *
 * Prints JSON {hash, found, status, blockNumber, from, to, transfers:[...]};
 * exit 0 if the receipt exists with status success, 1 otherwise.
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { decodeEventLog, isAddressEqual } from "viem";
import { USDC_ADDRESS, parseArgs, publicClient, readChainState } from "./lib.mjs";

const transferEvent = [{ type: "event", name: "Transfer", inputs: [
  { name: "from", type: "address", indexed: true },
  { name: "to", type: "address", indexed: true },
  { name: "value", type: "uint256", indexed: false }] }];

export async function checkTx(chain, hash) {
  const pc = publicClient(chain.rpcUrl);
  let r;
  try {
    r = await pc.getTransactionReceipt({ hash });
  } catch {
    return { hash, found: false };
  }
  const transfers = [];
  for (const log of r.logs) {
    if (!isAddressEqual(log.address, USDC_ADDRESS)) continue;
    try {
      const ev = decodeEventLog({ abi: transferEvent, data: log.data, topics: log.topics });
      transfers.push({ from: ev.args.from, to: ev.args.to, value: ev.args.value.toString() });
    } catch {
      /* another event of the token (AuthorizationUsed) */
    }
  }
  return { hash, found: true, status: r.status, blockNumber: r.blockNumber.toString(),
    from: r.from, to: r.to, gasUsed: r.gasUsed.toString(), transfers };
}

async function main() {
  const args = parseArgs(process.argv.slice(2), ["pretty"]);
  const chain = readChainState(args["run-dir"] || process.env.X402_RUN_DIR || "run");
  const hash = args.hash || args._[0];
  if (!/^0x[0-9a-fA-F]{64}$/.test(hash || "")) {
    console.error("usage: tx.mjs --run-dir DIR 0xHASH (32-byte hash)");
    process.exit(2);
  }
  const out = await checkTx(chain, hash);
  console.log(JSON.stringify(out, null, args.pretty ? 2 : 0));
  process.exitCode = out.found && out.status === "success" ? 0 : 1;
}

if (process.argv[1] && process.argv[1].endsWith("tx.mjs")) {
  main().catch((e) => {
    console.error(`tx: ${e.message}`);
    process.exit(2);
  });
}
