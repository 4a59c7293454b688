// The AWS SDK for JavaScript v3 on Node through throttle-proxy, as an app would use it.
// Run by tests/e2e/test_js_sdk.py: argv[2] is a JSON job, the result is one JSON line on stdout.
// The SDK signs nothing (a no-op signer): the proxy signs. Two ways in are exercised: a
// path-prefix route as the endpoint, and the forward-proxy form through http-proxy-agent.
import { createHash } from "node:crypto";
import { createReadStream, readFileSync } from "node:fs";

import { DynamoDBClient, BatchWriteItemCommand, BatchGetItemCommand, CreateTableCommand } from "@aws-sdk/client-dynamodb";
import { S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand } from "@aws-sdk/client-s3";
import { SQSClient, CreateQueueCommand, SendMessageCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";
import { Upload } from "@aws-sdk/lib-storage";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { HttpProxyAgent } from "http-proxy-agent";

const job = JSON.parse(process.argv[2]);

// The README's snippet: the proxy signs, so the SDK's own signer does nothing.
const noSigning = {
  region: "us-east-1",
  credentials: { accessKeyId: "unused", secretAccessKey: "unused" },
  signer: { sign: async (request) => request },
  maxAttempts: 1,
};

function viaRoute(service) {
  // Way 3: a path-prefix route of the proxy is the endpoint.
  return { ...noSigning, endpoint: `${job.proxy}/via-route/${service}` };
}

function viaForwardProxy(service) {
  // Way 2: the AWS host as the endpoint, the proxy as the HTTP proxy (Node ignores HTTP_PROXY).
  const agent = new HttpProxyAgent(job.proxy);
  return {
    ...noSigning,
    endpoint: `http://${service}.us-east-1.amazonaws.com`,
    requestHandler: new NodeHttpHandler({ httpAgent: agent }),
  };
}

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

async function streamSha256(body) {
  const hash = createHash("sha256");
  let length = 0;
  for await (const chunk of body) {
    hash.update(chunk);
    length += chunk.length;
  }
  return { sha256: hash.digest("hex"), length };
}

const s3Config = () => (job.way === "route" ? viaRoute("s3") : viaForwardProxy("s3"));
// Forward-proxy form: http-proxy-agent would write the head twice after 100 Continue.
const s3Expect = () => (job.way === "route" ? {} : { expectContinueHeader: false });

async function s3Job() {
  const s3 = new S3Client({ ...s3Config(), forcePathStyle: true, ...s3Expect(), ...job.s3Options });
  await s3.send(new CreateBucketCommand({ Bucket: job.bucket }));
  const results = [];
  for (const object of job.objects) {
    let body;
    if (object.kind === "buffer") body = readFileSync(object.path);
    else if (object.kind === "string") body = object.text;
    else if (object.kind === "stream") body = createReadStream(object.path);
    if (object.kind === "upload") {
      const upload = new Upload({
        client: s3,
        params: { Bucket: job.bucket, Key: object.key, Body: createReadStream(object.path) },
        partSize: 5 * 1024 * 1024,
        queueSize: 2,
      });
      await upload.done();
    } else {
      await s3.send(new PutObjectCommand({ Bucket: job.bucket, Key: object.key, Body: body }));
    }
    const got = await s3.send(new GetObjectCommand({ Bucket: job.bucket, Key: object.key }));
    results.push({ key: object.key, ...(await streamSha256(got.Body)) });
  }
  return results;
}

// Uploads the proxy refuses: each attempt's error as the app sees it (name, status, and the
// proxy's reason header), or "stored". A file stream, framed aws-chunked by the SDK.
async function s3RefusedJob() {
  const s3 = new S3Client({ ...s3Config(), forcePathStyle: true, ...s3Expect() });
  await s3.send(new CreateBucketCommand({ Bucket: job.bucket }));
  const seen = [];
  for (let i = 0; i < job.tries; i++) {
    try {
      await s3.send(new PutObjectCommand({ Bucket: job.bucket, Key: job.key, Body: createReadStream(job.path) }));
      seen.push("stored");
    } catch (error) {
      const headers = error.$response?.headers ?? {};
      seen.push({ name: error.name, status: error.$metadata?.httpStatusCode ?? null, reason: headers["x-throttle-proxy-error"] ?? null });
    }
  }
  return seen;
}

// A host the proxy refuses (job.host, with {service} in it): each service's error as the app
// sees it, by the forward-proxy way.
async function refusedHostJob() {
  const config = (service) => ({ ...viaForwardProxy(service), endpoint: `http://${job.host.replace("{service}", service)}` });
  const calls = {
    s3: () => new S3Client({ ...config("s3"), forcePathStyle: true }).send(new GetObjectCommand({ Bucket: "b", Key: "k" })),
    dynamodb: () => new DynamoDBClient(config("dynamodb")).send(new BatchGetItemCommand({ RequestItems: { t: { Keys: [{ k: { S: "k" } }] } } })),
    sqs: () => new SQSClient(config("sqs")).send(new CreateQueueCommand({ QueueName: "q" })),
    sts: () => new STSClient(config("sts")).send(new GetCallerIdentityCommand({})),
  };
  const seen = {};
  for (const [service, call] of Object.entries(calls)) {
    try {
      await call();
      seen[service] = "answered";
    } catch (error) {
      const headers = error.$response?.headers ?? {};
      seen[service] = { name: error.name, status: error.$metadata?.httpStatusCode ?? null, reason: headers["x-throttle-proxy-error"] ?? null };
    }
  }
  return seen;
}

async function dynamodbJob() {
  const config = job.way === "route" ? viaRoute("dynamodb") : viaForwardProxy("dynamodb");
  const ddb = new DynamoDBClient(config);
  await ddb.send(new CreateTableCommand({
    TableName: job.table,
    KeySchema: [{ AttributeName: "k", KeyType: "HASH" }],
    AttributeDefinitions: [{ AttributeName: "k", AttributeType: "S" }],
    BillingMode: "PAY_PER_REQUEST",
  }));
  const blob = readFileSync(job.path);
  const items = [];
  for (let i = 0; i < job.items; i++) {
    const value = blob.subarray(i * job.itemSize, (i + 1) * job.itemSize);
    items.push({ PutRequest: { Item: { k: { S: `item-${i}` }, v: { B: value } } } });
  }
  const written = await ddb.send(new BatchWriteItemCommand({ RequestItems: { [job.table]: items } }));
  const unprocessed = Object.keys(written.UnprocessedItems ?? {}).length;
  const hashes = {};
  for (let start = 0; start < job.items; start += 10) {
    const keys = [];
    for (let i = start; i < Math.min(start + 10, job.items); i++) keys.push({ k: { S: `item-${i}` } });
    const got = await ddb.send(new BatchGetItemCommand({ RequestItems: { [job.table]: { Keys: keys } } }));
    for (const item of got.Responses[job.table]) hashes[item.k.S] = sha256(item.v.B);
  }
  return { unprocessed, hashes };
}

async function sqsJob() {
  const sqs = new SQSClient(job.way === "route" ? viaRoute("sqs") : viaForwardProxy("sqs"));
  const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: job.queue }));
  await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: job.message }));
  const got = await sqs.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 1, WaitTimeSeconds: 1 }));
  return { bodies: (got.Messages ?? []).map((m) => m.Body) };
}

async function stsJob() {
  const sts = new STSClient(job.way === "route" ? viaRoute("sts") : viaForwardProxy("sts"));
  const me = await sts.send(new GetCallerIdentityCommand({}));
  return { arn: me.Arn };
}

const jobs = { s3: s3Job, "s3-refused": s3RefusedJob, "refused-host": refusedHostJob, dynamodb: dynamodbJob, sqs: sqsJob, sts: stsJob };
try {
  const result = await jobs[job.service]();
  process.stdout.write(JSON.stringify({ ok: true, result }) + "\n");
} catch (error) {
  const meta = error.$metadata ?? {};
  process.stdout.write(JSON.stringify({
    ok: false, name: error.name, message: String(error.message), status: meta.httpStatusCode ?? null,
  }) + "\n");
}
