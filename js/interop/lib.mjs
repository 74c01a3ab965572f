/*
 * Shared pieces of the interop tooling: the local chain's constants, the
 * accounts, viem clients, the run-dir state files, ports and processes.
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { readFileSync, writeFileSync, renameSync, existsSync, mkdirSync,
  openSync } from "node:fs";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createPublicClient, createWalletClient, defineChain, http,
  publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const JS_DIR = join(ROOT, "js");
export const ANVIL_BIN = join(JS_DIR, "node_modules", "@foundry-rs",
  "anvil-linux-amd64", "bin", "anvil");

/* Base Sepolia, so that the official defaults apply unchanged (coinbase/x402
 * mechanisms/evm/src/shared/defaultAssets.ts). */
export const CHAIN_ID = 84532;
export const NETWORK_V2 = "eip155:84532";
export const NETWORK_V1 = "base-sepolia";
export const USDC_ADDRESS = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
export const USDC_NAME = "USDC";
export const USDC_VERSION = "2";
export const USDC_DECIMALS = 6;
export const MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11";
/*
 * The second stablecoin (contracts/TestEURC.sol), placed at Circle's Base
 * Sepolia EURC address with EURC's EIP-712 identity (FiatTokenV2: "EURC",
 * "2", 6 decimals). Not in x402's default assets: offers name it.
 */
export const EURC_ADDRESS = "0x808456652fdb597867f38412077A9182bf77359F";
export const EURC_NAME = "EURC";
export const EURC_VERSION = "2";
/* The second local chain's id (a second anvil), outside every x402 table. */
export const SECOND_CHAIN_ID = 31338;
/* token key -> where chain.mjs places it and what it must present */
export const TOKENS = {
  usdc: { artifact: "TestUSDC", address: USDC_ADDRESS, name: USDC_NAME,
    version: USDC_VERSION, decimals: 6 },
  eurc: { artifact: "TestEURC", address: EURC_ADDRESS, name: EURC_NAME,
    version: EURC_VERSION, decimals: 6 },
};
/* The recipient of the examples (coinbase/x402
 * specs/extensions/eip2612_gas_sponsoring.md); nobody holds its key here. */
export const DEFAULT_PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

/*
 * anvil's well-known development keys (mnemonic "test test ... junk"). They
 * are public: never use them anywhere but on a local chain.
 */
export const DEV_KEYS = {
  minter: "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
  facilitator: "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
  payer: "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
  poor: "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
  payer2: "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
};

export const chainDef = (rpcUrl, chainId = CHAIN_ID) => defineChain({
  id: chainId,
  name: chainId === CHAIN_ID ? "Base Sepolia (local anvil)"
    : `local anvil ${chainId}`,
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [rpcUrl] } },
  contracts: { multicall3: { address: MULTICALL3_ADDRESS } },
});

export function publicClient(rpcUrl, chainId = CHAIN_ID) {
  return createPublicClient({ chain: chainDef(rpcUrl, chainId),
    transport: http(rpcUrl) });
}

export function walletClient(rpcUrl, key, chainId = CHAIN_ID) {
  return createWalletClient({ account: privateKeyToAccount(key),
    chain: chainDef(rpcUrl, chainId), transport: http(rpcUrl) })
    .extend(publicActions);
}

export function artifact(name) {
  return JSON.parse(readFileSync(join(ROOT, "contracts", "artifacts",
    `${name}.json`), "utf8"));
}

/* ---- run dir state ---- */

export function writeJson(path, obj) {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp${process.pid}`;
  writeFileSync(tmp, JSON.stringify(obj, null, 2) + "\n");
  renameSync(tmp, path);
}

export function readJson(path) {
  return JSON.parse(readFileSync(path, "utf8"));
}

export function readChainState(runDir) {
  const p = join(runDir, "chain.json");
  if (!existsSync(p)) {
    throw new Error(`${p} not found: start the chain first ` +
      "(node js/interop/chain.mjs start --run-dir DIR)");
  }
  return readJson(p);
}

/* ---- arguments ---- */

/* --name value pairs and bare --flags; the rest is positional. */
export function parseArgs(argv, flags = []) {
  const out = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      if (eq > 0) {
        out[a.slice(2, eq)] = a.slice(eq + 1);
      } else if (flags.includes(a.slice(2))) {
        out[a.slice(2)] = true;
      } else {
        if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
        out[a.slice(2)] = argv[++i];
      }
    } else {
      out._.push(a);
    }
  }
  return out;
}

/* ---- ports and processes ---- */

/* A free port in 20000-60000 (the project's rule for test servers). */
export async function freePort() {
  for (let i = 0; i < 50; i++) {
    const port = 20000 + Math.floor(Math.random() * 40000);
    const ok = await new Promise((res) => {
      const s = createServer();
      s.once("error", () => res(false));
      s.listen(port, "127.0.0.1", () => s.close(() => res(true)));
    });
    if (ok) return port;
  }
  throw new Error("no free port found in 20000-60000");
}

/* Start a detached process with output to logPath; returns its pid. */
export function spawnDetached(cmd, args, logPath, env = process.env) {
  mkdirSync(dirname(logPath), { recursive: true });
  const fd = openSync(logPath, "a");
  const child = spawn(cmd, args, { detached: true, stdio: ["ignore", fd, fd],
    env });
  child.unref();
  return child.pid;
}

export function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function stopPid(pid, graceMs = 3000) {
  if (!pid || !alive(pid)) return false;
  process.kill(pid, "SIGTERM");
  const t0 = Date.now();
  while (alive(pid) && Date.now() - t0 < graceMs) {
    await sleep(50);
  }
  if (alive(pid)) process.kill(pid, "SIGKILL");
  return true;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(what, fn, timeoutMs = 15000, stepMs = 100) {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < timeoutMs) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(stepMs);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

/* ---- amounts ---- */

export function formatUnits6(atomic) {
  const v = BigInt(atomic);
  const neg = v < 0n;
  const a = neg ? -v : v;
  const s = `${a / 1000000n}.${(a % 1000000n).toString().padStart(6, "0")}`;
  return neg ? `-${s}` : s;
}

export const erc20Abi = [
  { type: "function", name: "balanceOf", stateMutability: "view",
    inputs: [{ name: "a", type: "address" }], outputs: [{ type: "uint256" }] },
];
