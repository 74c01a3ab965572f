#!/usr/bin/env node
/*
 * Launcher for the OFFICIAL x402 facilitator from npm: @x402/core's
 * x402Facilitator with @x402/evm's exact scheme, registered for x402 v2
 * (eip155:84532) and v1 (base-sepolia), settling with a local anvil account
 * against the local node. Served with node's http module on 127.0.0.1:
 *
 *   POST /verify, POST /settle   body {x402Version, paymentPayload,
 *                                paymentRequirements} (x402 spec v2 7.1)
 *   GET  /supported, GET /health
 *
 * Answers as the official TypeScript facilitator does (coinbase/x402
 * e2e/facilitators/typescript/index.ts): 200 with isValid:false /
 * success:false for an invalid payment, 400 for a malformed request, 500
 * {"error"} when the library throws.
 *
 *   node js/interop/facilitator.mjs start --run-dir DIR [--port N] [--require-verify]
 *   node js/interop/facilitator.mjs stop  --run-dir DIR
 *   node js/interop/facilitator.mjs serve --run-dir DIR --port N   (foreground)
 *
 * Every request is logged as one JSON line to DIR/facilitator-requests.jsonl
 * with `verifiedBefore` on settles: whether a successful /verify of the
 * byte-identical paymentPayload came first. --require-verify refuses settles
 * without one, as the official e2e facilitator does (coinbase/x402
 * e2e/facilitators/typescript/index.ts).
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { createServer } from "node:http";
import { appendFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { nonceManager } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createWalletClient, http, publicActions } from "viem";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/facilitator";
import { ExactEvmSchemeV1 } from "@x402/evm/exact/v1/facilitator";
import {
  CHAIN_ID, NETWORK_V1, NETWORK_V2, chainDef, freePort, parseArgs, readChainState,
  readJson, spawnDetached, stopPid, alive, waitFor, writeJson,
} from "./lib.mjs";

const MAX_BODY = 1 << 20;
const SELF = fileURLToPath(import.meta.url);

/*
 * chainId: the chain's id (chain.json); a chain other than Base Sepolia's
 * (a second anvil, issue 12) is registered as eip155:<id> for v2 only, as it
 * has no v1 name.
 */
export function buildFacilitator(rpcUrl, key, chainId = CHAIN_ID) {
  /* A nonce manager keeps concurrent settlements from reusing a tx nonce. */
  const account = privateKeyToAccount(key, { nonceManager });
  const client = createWalletClient({ account, chain: chainDef(rpcUrl, chainId),
    transport: http(rpcUrl) }).extend(publicActions);
  const signer = toFacilitatorEvmSigner({ ...client, address: account.address },
    { confirmationTimeoutMs: 30000 });
  const facilitator = new x402Facilitator()
    .register(chainId === CHAIN_ID ? NETWORK_V2 : `eip155:${chainId}`,
      new ExactEvmScheme(signer));
  if (chainId === CHAIN_ID) {
    facilitator.registerV1(NETWORK_V1, new ExactEvmSchemeV1(signer));
  }
  return { facilitator, address: account.address };
}

function readBody(req) {
  return new Promise((res, rej) => {
    const chunks = [];
    let n = 0;
    req.on("data", (c) => {
      n += c.length;
      if (n > MAX_BODY) {
        /* answer 413, then drop the connection (the rest is not read) */
        req.removeAllListeners("data");
        req.pause();
        rej(Object.assign(new Error(`body larger than ${MAX_BODY} bytes`), { status: 413 }));
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => res(Buffer.concat(chunks).toString("utf8")));
    req.on("error", rej);
  });
}

/* JSON.stringify replacer: BigInt never appears in answers, but be safe. */
const jsonSafe = (_k, v) => (typeof v === "bigint" ? v.toString() : v);

export function serve({ rpcUrl, key, port, logPath, requireVerify = false,
  chainId = CHAIN_ID }) {
  const { facilitator, address } = buildFacilitator(rpcUrl, key, chainId);
  /* sha256(JSON.stringify(paymentPayload)) of successful verifies. */
  const verified = new Map();
  let seq = 0;

  const log = (rec) => {
    if (logPath) appendFileSync(logPath, JSON.stringify(rec, jsonSafe) + "\n");
  };

  const server = createServer(async (req, res) => {
    const t0 = Date.now();
    const id = ++seq;
    let status = 200;
    let out;
    let body;
    let extra = {};
    try {
      const path = new URL(req.url, "http://x").pathname.replace(/\/+$/, "");
      if (req.method === "GET" && path === "/supported") {
        out = facilitator.getSupported();
      } else if (req.method === "GET" && path === "/health") {
        out = { status: "ok", signer: address, rpcUrl };
      } else if (req.method === "POST" && (path === "/verify" || path === "/settle")) {
        const text = await readBody(req);
        try {
          body = JSON.parse(text);
        } catch {
          status = 400;
          out = { error: "request body is not JSON" };
        }
        if (!out) {
          const pp = body?.paymentPayload;
          const pr = body?.paymentRequirements;
          if (!pp || typeof pp !== "object" || !pr || typeof pr !== "object") {
            status = 400;
            out = { error: "Missing paymentPayload or paymentRequirements" };
          } else {
            const digest = createHash("sha256").update(JSON.stringify(pp)).digest("hex");
            extra.payloadSha256 = digest;
            if (path === "/verify") {
              out = await facilitator.verify(pp, pr);
              if (out.isValid) verified.set(digest, Date.now());
            } else {
              const seen = verified.get(digest);
              extra.verifiedBefore = !!(seen && Date.now() - seen < 300000);
              if (requireVerify && !extra.verifiedBefore) {
                out = { success: false, errorReason: "payment_not_verified",
                  errorMessage: "Payment must be verified before settlement",
                  transaction: "", network: pr.network ?? "" };
              } else {
                out = await facilitator.settle(pp, pr);
                if (out.success) verified.delete(digest);
              }
            }
          }
        }
      } else {
        status = 404;
        out = { error: `no route ${req.method} ${req.url}` };
      }
    } catch (e) {
      status = e.status || 500;
      out = { error: e instanceof Error ? e.message : String(e) };
    }
    const text = JSON.stringify(out, jsonSafe);
    /* Log before answering: whoever got the answer may read the log next. */
    log({ t: new Date(t0).toISOString(), id, method: req.method, path: req.url,
      status, ms: Date.now() - t0, ...extra, request: body, response: out });
    const headers = { "content-type": "application/json",
      "content-length": Buffer.byteLength(text) };
    if (status === 413) {
      headers.connection = "close";
      res.on("finish", () => req.socket.destroy());
    }
    res.writeHead(status, headers);
    res.end(text);
  });
  server.keepAliveTimeout = 65000;
  return new Promise((resolveP, rej) => {
    server.once("error", rej);
    server.listen(port, "127.0.0.1", () => resolveP({ server, address }));
  });
}

async function start(runDir, args) {
  const chain = readChainState(runDir);
  let lastErr;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = args.port ? Number(args.port) : await freePort();
    const logPath = join(runDir, "facilitator.log");
    const argv = [SELF, "serve", "--run-dir", runDir, "--port", String(port)];
    if (args["require-verify"]) argv.push("--require-verify");
    const pid = spawnDetached(process.execPath, argv, logPath);
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitFor("facilitator", async () => {
        if (!alive(pid)) throw new Error(`facilitator exited, see ${logPath}`);
        const r = await fetch(`${url}/supported`);
        return r.ok;
      }, 20000, 100);
    } catch (e) {
      lastErr = e;
      await stopPid(pid);
      if (args.port) break;
      continue;
    }
    const supported = await (await fetch(`${url}/supported`)).json();
    const state = { url, port, pid, log: logPath,
      requestLog: join(runDir, "facilitator-requests.jsonl"),
      signer: chain.accounts.facilitator.address, supported,
      requireVerify: !!args["require-verify"] };
    writeJson(join(runDir, "facilitator.json"), state);
    return state;
  }
  throw lastErr;
}

async function main() {
  const args = parseArgs(process.argv.slice(2), ["require-verify"]);
  const cmd = args._[0];
  const runDir = resolve(args["run-dir"] || "run");
  if (cmd === "serve") {
    const chain = readChainState(runDir);
    const { address } = await serve({ rpcUrl: chain.rpcUrl,
      key: chain.accounts.facilitator.key, port: Number(args.port),
      logPath: join(runDir, "facilitator-requests.jsonl"),
      requireVerify: !!args["require-verify"], chainId: chain.chainId ?? CHAIN_ID });
    console.log(`facilitator listening on http://127.0.0.1:${args.port} ` +
      `signer ${address} rpc ${chain.rpcUrl}`);
    const bye = () => process.exit(0);
    process.on("SIGTERM", bye);
    process.on("SIGINT", bye);
  } else if (cmd === "start") {
    const t0 = Date.now();
    const st = await start(runDir, args);
    console.log(JSON.stringify({ ...st, startMs: Date.now() - t0 }, null, 2));
  } else if (cmd === "stop") {
    const st = readJson(join(runDir, "facilitator.json"));
    const stopped = await stopPid(st.pid);
    console.log(stopped ? `stopped facilitator pid ${st.pid}`
      : `facilitator pid ${st.pid} not running`);
  } else {
    console.error("usage: facilitator.mjs start|stop|serve --run-dir DIR [--port N]");
    process.exit(2);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === SELF) {
  main().catch((e) => {
    console.error(`facilitator.mjs: ${e.stack || e.message}`);
    process.exit(1);
  });
}
