# LocalStack DynamoDB throughput: UpdateItem at 1/16/64 client threads, BatchWriteItem and TransactWriteItems
# for 1,000 items (BENCHMARKS.md, "Reading the two misses"). Needs LocalStack on 127.0.0.1:4566.
#   ~/.cache/sluice/localstack/bin/python tests/sim/scripts/localstack-dynamodb-throughput.py
import boto3, time, sys
from concurrent.futures import ThreadPoolExecutor
from botocore.config import Config
c = boto3.client("dynamodb", endpoint_url="http://127.0.0.1:4566", region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test", config=Config(max_pool_connections=128))
t="tp-bench"
try:
    c.create_table(TableName=t, KeySchema=[{"AttributeName":"pk","KeyType":"HASH"}],
        AttributeDefinitions=[{"AttributeName":"pk","AttributeType":"S"}], BillingMode="PAY_PER_REQUEST")
except Exception as e: pass
def up(i):
    c.update_item(TableName=t, Key={"pk":{"S":f"u{i}"}}, UpdateExpression="ADD n :one", ExpressionAttributeValues={":one":{"N":"1"}})
for conc in [1, 16, 64]:
    N=400
    t0=time.time()
    with ThreadPoolExecutor(conc) as ex: list(ex.map(up, range(N)))
    dt=time.time()-t0
    print(f"UpdateItem conc={conc}: {N/dt:.0f}/s ({dt*1000/N:.1f} ms each)")
def bw(j):
    c.batch_write_item(RequestItems={t:[{"PutRequest":{"Item":{"pk":{"S":f"b{j}-{k}"}}}} for k in range(25)]})
t0=time.time()
with ThreadPoolExecutor(8) as ex: list(ex.map(bw, range(40)))
print(f"BatchWriteItem 1000 items in 40 calls: {time.time()-t0:.2f}s")
def tx(j):
    c.transact_write_items(TransactItems=[{"Update":{"TableName":t,"Key":{"pk":{"S":f"x{j}-{k}"}},"UpdateExpression":"ADD n :one","ExpressionAttributeValues":{":one":{"N":"1"}}}} for k in range(100)])
t0=time.time()
with ThreadPoolExecutor(8) as ex: list(ex.map(tx, range(10)))
print(f"TransactWriteItems 1000 updates in 10 calls: {time.time()-t0:.2f}s")
c.delete_table(TableName=t)
