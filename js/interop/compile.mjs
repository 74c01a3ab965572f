#!/usr/bin/env node
/*
 * Compile contracts/*.sol with solc from npm into contracts/artifacts/*.json.
 * The artifacts are committed, so nothing at run time needs a compiler.
 *
 *   node js/interop/compile.mjs          write the artifacts
 *   node js/interop/compile.mjs --check  recompile and fail (exit 1) if a
 *                                        committed artifact does not match
 *                                        its source
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const contractsDir = join(root, "contracts");
const artifactsDir = join(contractsDir, "artifacts");

/* source file -> contract name (one artifact each) */
const CONTRACTS = {
  "TestUSDC.sol": "TestUSDC",
  "Multicall3Lite.sol": "Multicall3Lite",
  "TestEURC.sol": "TestEURC",
};
/* sources that are only imported (abstract bases: no artifact) */
const IMPORTED = ["EIP3009Token.sol"];

/* Pinned: anvil's default hardfork is newer, cancun is enough and stable. */
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  outputSelection: {
    "*": {
      "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object",
        "storageLayout"],
    },
  },
};

function sha256(s) {
  return createHash("sha256").update(s).digest("hex");
}

export function compileAll() {
  const sources = {};
  for (const file of [...Object.keys(CONTRACTS), ...IMPORTED]) {
    sources[file] = { content: readFileSync(join(contractsDir, file), "utf8") };
  }
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) {
    process.stderr.write(e.formattedMessage + "\n");
  }
  if (errors.length) {
    throw new Error(`solc: ${errors.length} error(s)`);
  }
  const artifacts = {};
  for (const [file, name] of Object.entries(CONTRACTS)) {
    const c = output.contracts[file][name];
    artifacts[name] = {
      contractName: name,
      sourcePath: `contracts/${file}`,
      sourceSha256: sha256(sources[file].content),
      compiler: { name: "solc", version: solc.version(), settings: {
        optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion } },
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
      storageLayout: c.storageLayout.storage.map((s) => ({
        label: s.label, slot: s.slot, offset: s.offset, type: s.type })),
    };
  }
  return artifacts;
}

function main() {
  const check = process.argv.includes("--check");
  const artifacts = compileAll();
  let bad = 0;
  mkdirSync(artifactsDir, { recursive: true });
  for (const [name, art] of Object.entries(artifacts)) {
    const path = join(artifactsDir, `${name}.json`);
    const text = JSON.stringify(art, null, 2) + "\n";
    if (check) {
      if (!existsSync(path)) {
        console.error(`MISSING ${path}`);
        bad++;
        continue;
      }
      const old = JSON.parse(readFileSync(path, "utf8"));
      const same = old.sourceSha256 === art.sourceSha256
        && old.deployedBytecode === art.deployedBytecode
        && old.bytecode === art.bytecode
        && JSON.stringify(old.abi) === JSON.stringify(art.abi);
      console.log(`${same ? "ok" : "STALE"} ${path}`);
      if (!same) bad++;
    } else {
      writeFileSync(path, text);
      console.log(`wrote ${path} (runtime ${
        (art.deployedBytecode.length - 2) / 2} bytes)`);
    }
  }
  if (bad) {
    console.error(`${bad} artifact(s) do not match their source: ` +
      "run node js/interop/compile.mjs");
    process.exit(1);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main();
}
