// The official side of bench/run.sh: @x402/express's paymentMiddleware with
// the offer the module's bench location makes (0.001 USDC on base-sepolia to
// the same payTo), settling through the same instant facilitator, serving
// the same 43-byte GIF nginx's empty_gif serves.
//
//   node bench/express-server.mjs PORT FACILITATOR_URL PAY_TO
import "../js/webcrypto.mjs"; // first: global crypto on Node 18
import express from "express";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { HTTPFacilitatorClient } from "@x402/core/server";

const [port, facilitatorUrl, payTo] = process.argv.slice(2);
if (!port || !facilitatorUrl || !payTo) {
  console.error("usage: express-server.mjs PORT FACILITATOR_URL PAY_TO");
  process.exit(2);
}

const gif = Buffer.from(
  "R0lGODlhAQABAIABAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==", "base64");

const server = new x402ResourceServer(
  new HTTPFacilitatorClient({ url: facilitatorUrl }),
).register("eip155:84532", new ExactEvmScheme());

const app = express();
app.disable("x-powered-by");
app.disable("etag");
app.use(paymentMiddleware({
  // the middleware matches the path without its trailing slash
  "GET /paid/*": {
    accepts: { scheme: "exact", price: "$0.001", network: "eip155:84532", payTo },
    description: "",
  },
}, server));
app.get("/paid/", (req, res) => res.type("image/gif").send(gif));
app.listen(Number(port), "127.0.0.1", () => console.log(`listening ${port}`));
