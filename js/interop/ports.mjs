#!/usr/bin/env node
/* Print N distinct free ports in 20000-60000 (for the shell scripts). */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { freePort } from "./lib.mjs";

const n = Number(process.argv[2] || 1);
const seen = new Set();
while (seen.size < n) seen.add(await freePort());
console.log([...seen].join(" "));
