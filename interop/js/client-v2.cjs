// AWS SDK for JavaScript v2 client for the interop suite. Credentials come only from the default
// provider chain (here: AWS.ECSCredentials reading AWS_CONTAINER_CREDENTIALS_FULL_URI and the
// authorization token). v2 does not read AWS_ENDPOINT_URL: the moto endpoint is passed in.
//
//   node client-v2.cjs identity        -> {"arn": "..."}
//   node client-v2.cjs movies TABLE    -> {"titles": [...]} after create, 3 puts, scan
"use strict";

process.env.AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE = "1";
const AWS = require("aws-sdk");

const [scenario, table] = process.argv.slice(2);
const options = { region: process.env.AWS_REGION, endpoint: process.env.AWS_ENDPOINT_URL };

async function identity() {
  const out = await new AWS.STS(options).getCallerIdentity({}).promise();
  return { arn: out.Arn };
}

async function movies() {
  const db = new AWS.DynamoDB(options);
  try {
    await db.deleteTable({ TableName: table }).promise();
  } catch (e) {
    if (e.code !== "ResourceNotFoundException") throw e;
  }
  await db.createTable({
    TableName: table,
    KeySchema: [{ AttributeName: "title", KeyType: "HASH" }],
    AttributeDefinitions: [{ AttributeName: "title", AttributeType: "S" }],
    BillingMode: "PAY_PER_REQUEST",
  }).promise();
  for (const title of ["Inception", "The Matrix", "Interstellar"]) {
    await db.putItem({ TableName: table, Item: { title: { S: title } } }).promise();
  }
  const scan = await db.scan({ TableName: table }).promise();
  return { titles: scan.Items.map((i) => i.title.S).sort() };
}

(scenario === "identity" ? identity() : movies()).then(
  (result) => console.log(JSON.stringify(result)),
  async (e) => {
    // The chain reports only "Missing credentials in config"; ask the container provider it
    // used for the cause, so the report can name it.
    let cause = "";
    try {
      await new AWS.ECSCredentials().getPromise();
    } catch (inner) {
      const status = inner.statusCode ? ` HTTP ${inner.statusCode}` : "";
      cause = ` (container provider: ${inner.code || inner.name}${status}: ${inner.message})`;
    }
    console.error(`${e.code || e.name}: ${e.message}${cause}`);
    process.exit(1);
  },
);
