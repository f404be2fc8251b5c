#!/usr/bin/env node
// Starts @vercel/cosmosdb-server (the local Cosmos DB stand-in) with local-only fixes, so the production code
// path sees what Cosmos DB does. Usage: node local/cosmosdb_server.js -p PORT --host HOST
//
// 1. Point reads of a missing document: its handler dereferences the document before checking that it
//    exists, answering HTTP 500 ("Cannot read properties of undefined") where Cosmos DB answers 404 NotFound.
//    Our code relies on the 404 (read-or-none is the hot path), so the handler is wrapped.
// 2. Keep-alive: the package answers "Connection: close" on every response unless its keepAlive option is
//    set, and its CLI never sets it, so every call paid a new TCP + TLS handshake (about half of each call's
//    time). Cosmos DB keeps connections open; so does this server now (idle connections close after 60 s;
//    urllib3 notices a closed pooled connection before reusing it).
// 3. Transactional batch: the package runs a batch's operations one by one and keeps the ones before a
//    failure. Cosmos DB runs an atomic batch all-or-nothing within one logical partition: every operation
//    must target the partition named in the request's x-ms-documentdb-partitionkey header (else 400), and on
//    a failure nothing is kept, the failing operation keeps its status and every other one answers 424.
//    Read, replace and delete operations also take the partition from that header, as Cosmos DB does.
// 4. Single-partition queries: the package filters every document of the container for each query, whatever
//    its partition key. Cosmos DB runs a query that names its partition key (x-ms-documentdb-partitionkey)
//    on that partition only, so its cost grows with the partition, not the container. The documents are
//    indexed by partition here and such a query sees only its partition's documents.
// 5. Conditional patch (a filter predicate, e.g. the launch state's single-use take, which names the browser
//    binding): the package compiles the predicate into a query and caches compiled queries by their text, so
//    every predicate with a new literal paid a fresh compile (about 40 ms, the slowest call of a launch), and
//    checked it over the whole container. Cosmos DB evaluates the predicate on the one document. Here its
//    string literals become query parameters (one compiled query per predicate shape) and the check runs in
//    the document's partition only (through 4.).
"use strict";
const { AsyncLocalStorage } = require("async_hooks");
const path = require("path");
const root = path.join(__dirname, "..", "node_modules", "@vercel", "cosmosdb-server", "lib");

// ---- 1. point read of a missing document -> 404 -----------------------------------------------------
const readDocument = require(path.join(root, "handler", "read-document"));
const originalRead = readDocument.default;
readDocument.default = (account, req, res, params) => {
  try {
    return originalRead(account, req, res, params);
  } catch (error) {
    if (error instanceof TypeError) {
      res.statusCode = 404;
      return { code: "NotFound", message: "Entity with the specified id does not exist in the system." };
    }
    throw error;
  }
};

function headerPartition(req) {
  const raw = req.headers["x-ms-documentdb-partitionkey"];
  if (!raw) return undefined;
  try {
    const parsed = JSON.parse(Array.isArray(raw) ? raw[0] : raw);
    return Array.isArray(parsed) ? parsed[0] : parsed;
  } catch (error) {
    return undefined;
  }
}

// ---- 4. documents indexed by partition; a single-partition query reads only its partition -------------
const Items = require(path.join(root, "account", "items")).default;
const queryScope = new AsyncLocalStorage();

function partitionIndex(items, partition) {
  if (!items._byPartition) items._byPartition = new Map();
  let rids = items._byPartition.get(partition);
  if (!rids) {
    rids = new Set();
    items._byPartition.set(partition, rids);
  }
  return rids;
}
const originalSet = Items.prototype._set;
Items.prototype._set = function set(data) {
  const stored = originalSet.call(this, data);
  partitionIndex(this, this._getPartition(data)).add(data._rid);
  return stored;
};
const originalDelete = Items.prototype.delete;
Items.prototype.delete = function remove(idOrRid, partition) {
  const data = this._item("/id", idOrRid, partition).read();
  originalDelete.call(this, idOrRid, partition);
  if (data) partitionIndex(this, this._getPartition(data)).delete(data._rid);
};
const originalQuery = Items.prototype.query;
Items.prototype.query = function query(params, options) {
  const scope = queryScope.getStore();
  if (scope && scope.literalsAsParameters) params = literalsAsParameters(params);
  if (!scope || scope.partition === undefined) return originalQuery.call(this, params, options);
  const all = this._data;
  const rids = partitionIndex(this, scope.partition);
  this._data = new Map([...rids].filter(rid => all.has(rid)).map(rid => [rid, all.get(rid)]));
  try {
    return originalQuery.call(this, params, options);
  } finally {
    this._data = all;
  }
};
const queryDocuments = require(path.join(root, "handler", "query-documents"));
const originalQueryDocuments = queryDocuments.default;
queryDocuments.default = (account, req, res, params) => {
  const cross = String(req.headers["x-ms-documentdb-query-enablecrosspartition"] || "").toLowerCase() === "true";
  const partition = cross ? undefined : headerPartition(req);
  return queryScope.run({ partition }, () => originalQueryDocuments(account, req, res, params));
};

// ---- 5. a conditional patch's predicate: literals as parameters, checked within the document's partition --
const patchDocument = require(path.join(root, "handler", "patch-document"));
const originalPatch = patchDocument.default;
patchDocument.default = (account, req, res, params) =>
  queryScope.run({ partition: headerPartition(req), literalsAsParameters: true },
    () => originalPatch(account, req, res, params));

function literalsAsParameters(params) {
  if (!params || typeof params.query !== "string") return params;
  const extra = [];
  const query = params.query.replace(/'([^'\\]*)'/g, (_, value) => {
    extra.push({ name: `@literal${extra.length}`, value });
    return `@literal${extra.length - 1}`;
  });
  return extra.length ? { ...params, query, parameters: [...(params.parameters || []), ...extra] } : params;
}

// ---- 3. atomic transactional batch within one partition ---------------------------------------------
const batchDocuments = require(path.join(root, "handler", "batch-documents"));
const originalBatch = batchDocuments.default;
const json = require(path.join(root, "json")).default;

const getValue = require(path.join(root, "utils", "get-value")).default;

// The keys under which the package's unique-key index finds one stored document.
function indexKeys(items, doc) {
  const partition = items._getPartition(doc);
  return items._uniqueKeyPaths.map(keyPath => items._getId(keyPath, getValue(keyPath.slice(1).split("/"), doc), partition));
}

batchDocuments.default = async (account, req, res, params) => {
  const operations = await json(req);
  const collection = account.database(params.dbId).collection(params.collId);
  const partition = headerPartition(req);
  const documents = collection.documents;
  if (!Array.isArray(operations) || partition === undefined || !collection.read()) {
    return originalBatch(account, Object.assign(req, { body: operations }), res, params);
  }
  const partitionOf = doc => documents._getPartition(doc);
  for (const op of operations) {
    if (op && op.resourceBody && partitionOf(op.resourceBody) !== partition) {
      res.statusCode = 400;
      return { code: "BadRequest", message: "Batch operations must all target the request's partition key." };
    }
    if (op && op.partitionKey === undefined) op.partitionKey = JSON.stringify([partition]);
  }
  // All-or-nothing: remember the partition's documents (only those: copying the whole collection made each
  // batch cost grow with everything stored) and restore them when an operation fails.
  const inPartition = partitionIndex(documents, partition);
  const saved = {
    items: new Map([...inPartition].filter(rid => documents._data.has(rid)).map(rid => [rid, documents._data.get(rid)])),
    rids: documents._ridCount,
    partition: new Set(inPartition),
  };
  req.body = operations;
  const results = await originalBatch(account, req, res, params);
  const failedAt = Array.isArray(results) ? results.findIndex(r => r.statusCode >= 400 && r.statusCode !== 424) : -1;
  if (failedAt >= 0) {
    for (const rid of partitionIndex(documents, partition)) {
      const item = documents._data.get(rid);
      if (!item) continue;
      for (const key of indexKeys(documents, item.read())) documents._index.delete(key);
      documents._data.delete(rid);
    }
    for (const [rid, item] of saved.items) {
      documents._data.set(rid, item);
      for (const key of indexKeys(documents, item.read())) documents._index.set(key, rid);
    }
    documents._ridCount = saved.rids;
    documents._byPartition.set(partition, saved.partition);
    return results.map((r, i) => (i === failedAt ? r : { statusCode: 424, requestCharge: 0 }));
  }
  return results;
};

// The package's JSON body reader consumes the request stream; a body read above is handed on through req.body.
const jsonModule = require(path.join(root, "json"));
const originalJson = jsonModule.default;
jsonModule.default = req => (req.body !== undefined ? Promise.resolve(req.body) : originalJson(req));

// ---- 2. keep-alive ----------------------------------------------------------------------------------
const server = require(root);
const originalCreate = server.createHttpsServer;
server.createHttpsServer = (options = {}) => {
  const created = originalCreate({ ...options, keepAlive: true });
  created.keepAliveTimeout = 60000;
  created.headersTimeout = 65000;
  return created;
};
server.default = server.createHttpsServer;
require(path.join(root, "cli.js"));
