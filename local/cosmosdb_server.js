#!/usr/bin/env node
// Starts @vercel/cosmosdb-server (the local Cosmos DB stand-in) with one fix applied.
//
// Its point-read handler dereferences the document before checking that it exists, so reading a missing
// document answers HTTP 500 ("Cannot read properties of undefined") where Cosmos DB answers 404 NotFound.
// Our code relies on the 404 (read-or-none is the hot path), so the handler is wrapped here, locally,
// leaving the production code path unchanged. Usage: node local/cosmosdb_server.js -p PORT --host HOST
"use strict";
const path = require("path");
const root = path.join(__dirname, "..", "node_modules", "@vercel", "cosmosdb-server", "lib");
const readDocument = require(path.join(root, "handler", "read-document"));
const original = readDocument.default;
readDocument.default = (account, req, res, params) => {
  try {
    return original(account, req, res, params);
  } catch (error) {
    if (error instanceof TypeError) {
      res.statusCode = 404;
      return { code: "NotFound", message: "Entity with the specified id does not exist in the system." };
    }
    throw error;
  }
};
require(path.join(root, "cli.js"));
