#!/usr/bin/env node
// Prints the GET /supported answer of the official facilitator exactly as
// facilitator.mjs builds it (x402Facilitator.getSupported(), no chain
// needed), so the core's /supported parser is tested against the real
// shape of the installed @x402/core (src/core/tests/supported_test.cpp).
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { buildFacilitator } from "./facilitator.mjs";

// anvil's public dev key 0: the facilitator signer of chain.mjs.
const key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const { facilitator } = buildFacilitator("http://127.0.0.1:1", key);
process.stdout.write(JSON.stringify(await facilitator.getSupported()));
