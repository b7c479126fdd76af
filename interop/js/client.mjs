// AWS SDK for JavaScript v3 client for the interop suite. Credentials come only from the default
// provider chain (here: the container provider reading AWS_CONTAINER_CREDENTIALS_FULL_URI).
//
//   node client.mjs identity        -> {"arn": "..."}
//   node client.mjs movies TABLE    -> {"titles": [...]} after create, 3 puts, scan
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";
import { fromHttp } from "@aws-sdk/credential-provider-http";
import {
  DynamoDBClient, CreateTableCommand, DeleteTableCommand, PutItemCommand, ScanCommand,
  ResourceNotFoundException,
} from "@aws-sdk/client-dynamodb";

const [scenario, table] = process.argv.slice(2);

async function identity() {
  const out = await new STSClient({}).send(new GetCallerIdentityCommand({}));
  return { arn: out.Arn };
}

async function movies() {
  const db = new DynamoDBClient({});
  try {
    await db.send(new DeleteTableCommand({ TableName: table }));
  } catch (e) {
    if (!(e instanceof ResourceNotFoundException)) throw e;
  }
  await db.send(new CreateTableCommand({
    TableName: table,
    KeySchema: [{ AttributeName: "title", KeyType: "HASH" }],
    AttributeDefinitions: [{ AttributeName: "title", AttributeType: "S" }],
    BillingMode: "PAY_PER_REQUEST",
  }));
  for (const title of ["Inception", "The Matrix", "Interstellar"]) {
    await db.send(new PutItemCommand({ TableName: table, Item: { title: { S: title } } }));
  }
  const scan = await db.send(new ScanCommand({ TableName: table }));
  return { titles: scan.Items.map((i) => i.title.S).sort() };
}

try {
  const result = scenario === "identity" ? await identity() : await movies();
  console.log(JSON.stringify(result));
} catch (e) {
  // The default chain reports only "Could not load credentials from any providers"; ask the
  // container provider it used for the cause, so the report can name it.
  let cause = "";
  try {
    await fromHttp({})();
  } catch (inner) {
    cause = ` (container provider: ${inner.name}: ${inner.message})`;
  }
  console.error(`${e.name}: ${e.message}${cause}`);
  process.exit(1);
}
