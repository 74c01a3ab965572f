#!/usr/bin/env node
/*
 * A tiny resource server built on the OFFICIAL server code, only to check
 * the chain + token + facilitator + clients path without nginx:
 *
 *   GET /v2/paid   @x402/core x402HTTPResourceServer (the logic every
 *                  official TS adapter shares) + @x402/evm exact server
 *                  scheme, price "$0.001" on eip155:84532, verify -> handler
 *                  -> settle, PAYMENT-RESPONSE on success.
 *   GET /v1/paid   the legacy v1 flow, hand-written (the official v2 server
 * does not take X-PAYMENT, coinbase/x402
 * core/src/http/x402HTTPResourceServer.ts): 402 JSON body,
 *                  X-PAYMENT -> facilitator /verify -> /settle through the
 *                  official HTTPFacilitatorClient -> X-PAYMENT-RESPONSE.
 *   GET /health
 *
 *   node js/interop/reference-server.mjs --run-dir DIR --port N
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { createServer } from "node:http";
import { resolve, join } from "node:path";
import { HTTPFacilitatorClient, x402HTTPResourceServer,
  x402ResourceServer } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { NETWORK_V1, NETWORK_V2, USDC_ADDRESS, USDC_NAME, USDC_VERSION,
  parseArgs, readChainState, readJson } from "./lib.mjs";

const PRICE_ATOMIC = "1000";

function adapterFor(req, url) {
  return {
    getHeader: (n) => {
      const v = req.headers[n.toLowerCase()];
      return Array.isArray(v) ? v[0] : v;
    },
    getMethod: () => req.method,
    getPath: () => url.pathname,
    getUrl: () => url.href,
    getAcceptHeader: () => req.headers.accept || "",
    getUserAgent: () => req.headers["user-agent"] || "",
    getQueryParams: () => Object.fromEntries(url.searchParams),
    getQueryParam: (n) => url.searchParams.get(n) ?? undefined,
  };
}

function send(res, status, headers, body) {
  const text = typeof body === "string" ? body : JSON.stringify(body ?? {});
  const h = { "content-type": "application/json" };
  for (const [k, v] of Object.entries(headers || {})) h[k.toLowerCase()] = v;
  res.writeHead(status, h);
  res.end(text);
}

export async function startReferenceServer({ facilitatorUrl, payTo, port }) {
  const facilitator = new HTTPFacilitatorClient({ url: facilitatorUrl });
  const resourceServer = new x402ResourceServer(facilitator)
    .register(NETWORK_V2, new ExactEvmScheme());
  const httpServer = new x402HTTPResourceServer(resourceServer, {
    "GET /v2/paid": {
      accepts: { scheme: "exact", payTo, price: "$0.001", network: NETWORK_V2 },
      description: "reference v2 resource",
      mimeType: "application/json",
    },
  });
  await httpServer.initialize();

  const v1Requirement = (url) => ({
    scheme: "exact", network: NETWORK_V1, maxAmountRequired: PRICE_ATOMIC,
    resource: url, description: "reference v1 resource",
    mimeType: "application/json", payTo, maxTimeoutSeconds: 60,
    asset: USDC_ADDRESS, extra: { name: USDC_NAME, version: USDC_VERSION },
  });
  const v1Fail = (res, url, error, extra = {}) => send(res, 402, {},
    { x402Version: 1, error, accepts: [v1Requirement(url)], ...extra });

  const server = createServer(async (req, res) => {
    const url = new URL(req.url, `http://${req.headers.host || "127.0.0.1"}`);
    try {
      if (url.pathname === "/health") {
        return send(res, 200, {}, { status: "ok" });
      }
      if (url.pathname === "/v1/paid") {
        const header = req.headers["x-payment"];
        if (!header) return v1Fail(res, url.href, "X-PAYMENT header is required");
        let payload;
        try {
          payload = JSON.parse(Buffer.from(header, "base64").toString("utf8"));
        } catch (e) {
          return v1Fail(res, url.href, `undecodable X-PAYMENT: ${e.message}`);
        }
        const reqmt = v1Requirement(url.href);
        const v = await facilitator.verify(payload, reqmt);
        if (!v.isValid) return v1Fail(res, url.href, v.invalidReason, { payer: v.payer });
        const body = { message: "paid v1 content", at: new Date().toISOString() };
        const s = await facilitator.settle(payload, reqmt);
        if (!s.success) return v1Fail(res, url.href, s.errorReason);
        return send(res, 200, { "x-payment-response":
          Buffer.from(JSON.stringify(s)).toString("base64") }, body);
      }
      const context = { adapter: adapterFor(req, url), path: url.pathname,
        method: req.method };
      if (!httpServer.requiresPayment(context)) {
        return send(res, 404, {}, { error: "not found" });
      }
      const result = await httpServer.processHTTPRequest(context);
      if (result.type === "payment-error") {
        const r = result.response;
        return send(res, r.status, r.headers, r.body ?? {});
      }
      if (result.type === "no-payment-required") {
        return send(res, 200, {}, { message: "free" });
      }
      const body = JSON.stringify({ message: "paid v2 content",
        at: new Date().toISOString() });
      const settled = await httpServer.processSettlement(result.paymentPayload,
        result.paymentRequirements, result.declaredExtensions,
        { request: context, responseBody: Buffer.from(body),
          responseHeaders: { "content-type": "application/json" } });
      if (!settled.success) {
        const r = settled.response;
        return send(res, r.status, { ...r.headers, ...settled.headers }, r.body ?? {});
      }
      return send(res, 200, settled.headers, body);
    } catch (e) {
      return send(res, 500, {}, { error: e.message });
    }
  });
  await new Promise((r, j) => {
    server.once("error", j);
    server.listen(port, "127.0.0.1", r);
  });
  return server;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const runDir = resolve(args["run-dir"] || "run");
  const chain = readChainState(runDir);
  const fac = readJson(join(runDir, "facilitator.json"));
  await startReferenceServer({ facilitatorUrl: fac.url, payTo: chain.payTo,
    port: Number(args.port) });
  console.log(`reference server listening on http://127.0.0.1:${args.port}`);
  process.on("SIGTERM", () => process.exit(0));
}

if (process.argv[1] && process.argv[1].endsWith("reference-server.mjs")) {
  main().catch((e) => {
    console.error(`reference-server: ${e.stack || e.message}`);
    process.exit(1);
  });
}
