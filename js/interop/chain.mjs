#!/usr/bin/env node
/*
 * The local chain: anvil from npm with Base Sepolia's chain id, our EIP-3009
 * token at the Base Sepolia USDC address, a Multicall3 at its canonical
 * address (the facilitator's failure diagnosis needs one), a funded payer.
 *
 * For several options (issue 12): --tokens usdc,eurc also places TestEURC
 * at the Base Sepolia EURC address, and --chain-id N starts another chain
 * (e.g. 31338, SECOND_CHAIN_ID) in its own run dir; the tokens' EIP-712
 * domains follow the chain id (computed at call time).
 *
 *   node js/interop/chain.mjs start --run-dir DIR [--port N] [--fund 10]
 *                                   [--chain-id 84532] [--tokens usdc]
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
  ANVIL_BIN, CHAIN_ID, DEFAULT_PAY_TO, DEV_KEYS, MULTICALL3_ADDRESS, TOKENS,
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

async function startAnvil(runDir, port, chainId = CHAIN_ID) {
  const log = join(runDir, "anvil.log");
  /* --silent keeps the log small; chain id 84532 = Base Sepolia. */
  const pid = spawnDetached(ANVIL_BIN, ["--host", "127.0.0.1", "--port",
    String(port), "--chain-id", String(chainId), "--accounts", "10",
    "--silent"], log);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor("anvil", async () => {
      if (!alive(pid)) throw new Error(`anvil exited, see ${log}`);
      return (await rpc(url, "eth_chainId")) === `0x${chainId.toString(16)}`;
    }, 15000, 100);
  } catch (e) {
    await stopPid(pid);
    throw e;
  }
  return { pid, url, log };
}

/* Places one token (a TOKENS entry) and checks the domain it presents. */
async function placeToken(url, chainId, tok, minter) {
  const art = artifact(tok.artifact);
  /* Runtime code only: no constructor runs, so set minter's slot by hand. */
  await rpc(url, "anvil_setCode", [tok.address, art.deployedBytecode]);
  await rpc(url, "anvil_setStorageAt", [tok.address, slotOf(art, "minter"),
    pad(minter.address, { size: 32 })]);

  /* The token must present exactly the domain the official clients sign. */
  const pc = publicClient(url, chainId);
  const read = (functionName) => pc.readContract({ address: tok.address,
    abi: art.abi, functionName });
  const [name, version, decimals, sep, m] = await Promise.all([
    read("name"), read("version"), read("decimals"), read("DOMAIN_SEPARATOR"),
    read("minter")]);
  const expected = hashDomain({ domain: { name: tok.name, version: tok.version,
    chainId, verifyingContract: tok.address },
  types: { EIP712Domain: [
    { name: "name", type: "string" }, { name: "version", type: "string" },
    { name: "chainId", type: "uint256" },
    { name: "verifyingContract", type: "address" }] } });
  if (name !== tok.name || version !== tok.version || decimals !== tok.decimals
      || sep !== expected || getAddress(m) !== minter.address) {
    throw new Error(`token misconfigured: name=${name} version=${version} ` +
      `decimals=${decimals} domain=${sep} (want ${expected}) minter=${m}`);
  }
  return sep;
}

export async function setupChain(url, { fund = "10", chainId = CHAIN_ID,
  tokens = ["usdc"] } = {}) {
  const mc = artifact("Multicall3Lite");
  const minter = privateKeyToAccount(DEV_KEYS.minter);
  const accounts = Object.fromEntries(Object.entries(DEV_KEYS).map(
    ([k, key]) => [k, { address: privateKeyToAccount(key).address, key }]));

  await rpc(url, "anvil_setCode", [MULTICALL3_ADDRESS, mc.deployedBytecode]);
  /* Gas for the facilitator's settlements (and for the test helpers). */
  for (const who of ["facilitator", "minter", "poor", "payer", "payer2"]) {
    await rpc(url, "anvil_setBalance", [accounts[who].address,
      `0x${(10n ** 21n).toString(16)}`]);
  }

  const placed = {};
  for (const key of tokens) {
    const tok = TOKENS[key];
    if (!tok) throw new Error(`unknown token ${key} (known: ${Object.keys(TOKENS)})`);
    const domainSeparator = await placeToken(url, chainId, tok, minter);
    placed[key] = { address: tok.address, name: tok.name, version: tok.version,
      decimals: tok.decimals, domainSeparator };
    const amount = parseUnits(String(fund), tok.decimals);
    for (const who of ["payer", "payer2"]) {
      await mint(url, accounts[who].address, amount, { chainId, token: key });
    }
  }
  return { accounts, tokens: placed,
    domainSeparator: placed.usdc?.domainSeparator };
}

export async function mint(url, to, atomic, { chainId = CHAIN_ID,
  token = "usdc" } = {}) {
  const tok = TOKENS[token];
  const wc = walletClient(url, DEV_KEYS.minter, chainId);
  const hash = await wc.writeContract({ address: tok.address,
    abi: artifact(tok.artifact).abi,
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

export async function startChain(runDir, { port, fund = "10",
  chainId = CHAIN_ID, tokens = ["usdc"] } = {}) {
  let lastErr;
  /* A random port can be taken between the probe and anvil's bind: retry. */
  for (let attempt = 0; attempt < 5; attempt++) {
    const p = port ? Number(port) : await freePort();
    let anvil;
    try {
      anvil = await startAnvil(runDir, p, chainId);
    } catch (e) {
      lastErr = e;
      if (port) break;
      continue;
    }
    try {
      const { accounts, tokens: placed, domainSeparator } = await setupChain(
        anvil.url, { fund, chainId, tokens });
      const state = {
        rpcUrl: anvil.url, port: p, pid: anvil.pid, log: anvil.log,
        chainId, network: `eip155:${chainId}`,
        networkV1: chainId === CHAIN_ID ? "base-sepolia" : null,
        /* the first chain's USDC, as before several tokens existed */
        token: placed.usdc && { address: USDC_ADDRESS, name: USDC_NAME,
          version: USDC_VERSION, decimals: 6, domainSeparator },
        tokens: placed,
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
    const st = await startChain(runDir, { port: args.port, fund: args.fund || "10",
      chainId: args["chain-id"] ? Number(args["chain-id"]) : CHAIN_ID,
      tokens: String(args.tokens || "usdc").split(",") });
    console.log(JSON.stringify({ ...st, startMs: Date.now() - t0 }, null, 2));
  } else if (cmd === "stop") {
    const st = readChainState(runDir);
    const stopped = await stopPid(st.pid);
    console.log(stopped ? `stopped anvil pid ${st.pid}` : `anvil pid ${st.pid} not running`);
  } else if (cmd === "mint") {
    const st = readChainState(runDir);
    const to = st.accounts[args.to]?.address || args.to;
    const hash = await mint(st.rpcUrl, to, parseUnits(String(args.amount), 6),
      { chainId: st.chainId, token: args.token || "usdc" });
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
