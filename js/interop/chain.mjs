#!/usr/bin/env node
/*
 * The local chain: anvil from npm with Base Sepolia's chain id, our EIP-3009
 * token at the Base Sepolia USDC address, a Multicall3 at its canonical
 * address (the facilitator's failure diagnosis needs one), a funded payer.
 *
 *   node js/interop/chain.mjs start --run-dir DIR [--port N] [--fund 10]
 *   node js/interop/chain.mjs stop  --run-dir DIR
 *   node js/interop/chain.mjs mint  --run-dir DIR --to ADDR --amount 1.5
 *   node js/interop/chain.mjs drain --run-dir DIR --who poor
 *
 * start writes DIR/chain.json (rpc url, port, pid, addresses, keys) and
 * prints it; anvil's output goes to DIR/anvil.log.
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { join, resolve } from "node:path";
import { getAddress, hashDomain, pad, parseUnits } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  ANVIL_BIN, CHAIN_ID, DEFAULT_PAY_TO, DEV_KEYS, MULTICALL3_ADDRESS,
  USDC_ADDRESS, USDC_NAME, USDC_VERSION, artifact, freePort, parseArgs,
  publicClient, readChainState, spawnDetached, stopPid, alive, waitFor,
  walletClient, writeJson, formatUnits6,
} from "./lib.mjs";

async function rpc(url, method, params = []) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
  });
  const j = await res.json();
  if (j.error) throw new Error(`${method}: ${j.error.message}`);
  return j.result;
}

function slotOf(art, label) {
  const s = art.storageLayout.find((x) => x.label === label);
  if (!s || s.offset !== 0) {
    throw new Error(`${art.contractName}: no slot for ${label}`);
  }
  return pad(`0x${BigInt(s.slot).toString(16)}`, { size: 32 });
}

async function startAnvil(runDir, port) {
  const log = join(runDir, "anvil.log");
  /* --silent keeps the log small; chain id 84532 = Base Sepolia. */
  const pid = spawnDetached(ANVIL_BIN, ["--host", "127.0.0.1", "--port",
    String(port), "--chain-id", String(CHAIN_ID), "--accounts", "10",
    "--silent"], log);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor("anvil", async () => {
      if (!alive(pid)) throw new Error(`anvil exited, see ${log}`);
      return (await rpc(url, "eth_chainId")) === `0x${CHAIN_ID.toString(16)}`;
    }, 15000, 100);
  } catch (e) {
    await stopPid(pid);
    throw e;
  }
  return { pid, url, log };
}

export async function setupChain(url, { fund = "10" } = {}) {
  const usdc = artifact("TestUSDC");
  const mc = artifact("Multicall3Lite");
  const minter = privateKeyToAccount(DEV_KEYS.minter);
  const accounts = Object.fromEntries(Object.entries(DEV_KEYS).map(
    ([k, key]) => [k, { address: privateKeyToAccount(key).address, key }]));

  /* Runtime code only: no constructor runs, so set minter's slot by hand. */
  await rpc(url, "anvil_setCode", [USDC_ADDRESS, usdc.deployedBytecode]);
  await rpc(url, "anvil_setStorageAt", [USDC_ADDRESS, slotOf(usdc, "minter"),
    pad(minter.address, { size: 32 })]);
  await rpc(url, "anvil_setCode", [MULTICALL3_ADDRESS, mc.deployedBytecode]);
  /* Gas for the facilitator's settlements (and for the test helpers). */
  for (const who of ["facilitator", "minter", "poor", "payer", "payer2"]) {
    await rpc(url, "anvil_setBalance", [accounts[who].address,
      `0x${(10n ** 21n).toString(16)}`]);
  }

  /* The token must present exactly the domain the official clients sign. */
  const pc = publicClient(url);
  const [name, version, decimals, sep, m] = await Promise.all([
    pc.readContract({ address: USDC_ADDRESS, abi: usdc.abi, functionName: "name" }),
    pc.readContract({ address: USDC_ADDRESS, abi: usdc.abi, functionName: "version" }),
    pc.readContract({ address: USDC_ADDRESS, abi: usdc.abi, functionName: "decimals" }),
    pc.readContract({ address: USDC_ADDRESS, abi: usdc.abi,
      functionName: "DOMAIN_SEPARATOR" }),
    pc.readContract({ address: USDC_ADDRESS, abi: usdc.abi, functionName: "minter" }),
  ]);
  const expected = hashDomain({ domain: { name: USDC_NAME, version: USDC_VERSION,
    chainId: CHAIN_ID, verifyingContract: USDC_ADDRESS },
  types: { EIP712Domain: [
    { name: "name", type: "string" }, { name: "version", type: "string" },
    { name: "chainId", type: "uint256" },
    { name: "verifyingContract", type: "address" }] } });
  if (name !== USDC_NAME || version !== USDC_VERSION || decimals !== 6
      || sep !== expected || getAddress(m) !== minter.address) {
    throw new Error(`token misconfigured: name=${name} version=${version} ` +
      `decimals=${decimals} domain=${sep} (want ${expected}) minter=${m}`);
  }

  const amount = parseUnits(String(fund), 6);
  for (const who of ["payer", "payer2"]) {
    await mint(url, accounts[who].address, amount);
  }
  return { accounts, domainSeparator: sep };
}

export async function mint(url, to, atomic) {
  const usdc = artifact("TestUSDC");
  const wc = walletClient(url, DEV_KEYS.minter);
  const hash = await wc.writeContract({ address: USDC_ADDRESS, abi: usdc.abi,
    functionName: "mint", args: [getAddress(to), BigInt(atomic)] });
  const r = await wc.waitForTransactionReceipt({ hash });
  if (r.status !== "success") throw new Error(`mint reverted: ${hash}`);
  return hash;
}

/* Burn every token of one of our keyed accounts (insufficient-balance tests). */
export async function drain(url, key) {
  const usdc = artifact("TestUSDC");
  const wc = walletClient(url, key);
  const bal = await wc.readContract({ address: USDC_ADDRESS, abi: usdc.abi,
    functionName: "balanceOf", args: [wc.account.address] });
  if (bal === 0n) return null;
  const hash = await wc.writeContract({ address: USDC_ADDRESS, abi: usdc.abi,
    functionName: "burn", args: [bal] });
  await wc.waitForTransactionReceipt({ hash });
  return hash;
}

export async function startChain(runDir, { port, fund = "10" } = {}) {
  let lastErr;
  /* A random port can be taken between the probe and anvil's bind: retry. */
  for (let attempt = 0; attempt < 5; attempt++) {
    const p = port ? Number(port) : await freePort();
    let anvil;
    try {
      anvil = await startAnvil(runDir, p);
    } catch (e) {
      lastErr = e;
      if (port) break;
      continue;
    }
    try {
      const { accounts, domainSeparator } = await setupChain(anvil.url, { fund });
      const state = {
        rpcUrl: anvil.url, port: p, pid: anvil.pid, log: anvil.log,
        chainId: CHAIN_ID, network: "eip155:84532", networkV1: "base-sepolia",
        token: { address: USDC_ADDRESS, name: USDC_NAME, version: USDC_VERSION,
          decimals: 6, domainSeparator },
        multicall3: MULTICALL3_ADDRESS,
        payTo: DEFAULT_PAY_TO,
        accounts,
        funded: String(fund),
        startedAt: new Date().toISOString(),
      };
      writeJson(join(runDir, "chain.json"), state);
      return state;
    } catch (e) {
      await stopPid(anvil.pid);
      throw e;
    }
  }
  throw lastErr;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const cmd = args._[0];
  const runDir = resolve(args["run-dir"] || "run");
  if (cmd === "start") {
    const t0 = Date.now();
    const st = await startChain(runDir, { port: args.port, fund: args.fund || "10" });
    console.log(JSON.stringify({ ...st, startMs: Date.now() - t0 }, null, 2));
  } else if (cmd === "stop") {
    const st = readChainState(runDir);
    const stopped = await stopPid(st.pid);
    console.log(stopped ? `stopped anvil pid ${st.pid}` : `anvil pid ${st.pid} not running`);
  } else if (cmd === "mint") {
    const st = readChainState(runDir);
    const to = st.accounts[args.to]?.address || args.to;
    const hash = await mint(st.rpcUrl, to, parseUnits(String(args.amount), 6));
    console.log(JSON.stringify({ minted: args.amount, to, transaction: hash }));
  } else if (cmd === "drain") {
    const st = readChainState(runDir);
    const acct = st.accounts[args.who];
    if (!acct) throw new Error(`unknown account ${args.who}`);
    const hash = await drain(st.rpcUrl, acct.key);
    console.log(JSON.stringify({ drained: acct.address, transaction: hash }));
  } else {
    console.error("usage: chain.mjs start|stop|mint|drain --run-dir DIR [...]");
    process.exit(2);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  main().catch((e) => {
    console.error(`chain.mjs: ${e.message}`);
    process.exit(1);
  });
}
