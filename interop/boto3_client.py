"""boto3/botocore client for the interop suite. Credentials come only from botocore's default
chain (here: the container provider reading AWS_CONTAINER_CREDENTIALS_FULL_URI).

    python boto3_client.py identity        -> {"arn": "..."}
    python boto3_client.py movies TABLE    -> {"titles": [...]} after create, 3 puts, scan
"""

import json
import sys

import boto3


def identity():
    return {"arn": boto3.client("sts").get_caller_identity()["Arn"]}


def movies(table):
    db = boto3.client("dynamodb")
    try:
        db.delete_table(TableName=table)
    except db.exceptions.ResourceNotFoundException:
        pass
    db.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "title", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "title", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for title in ["Inception", "The Matrix", "Interstellar"]:
        db.put_item(TableName=table, Item={"title": {"S": title}})
    items = db.scan(TableName=table)["Items"]
    return {"titles": sorted(i["title"]["S"] for i in items)}


def main():
    scenario = sys.argv[1]
    try:
        result = identity() if scenario == "identity" else movies(sys.argv[2])
    except Exception as e:  # report the SDK's own words, one line
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
