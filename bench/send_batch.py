"""CPU per record: aiokafka `send` per record against `streams.sending.send_batched`.

    python bench/send_batch.py [--records 20000] [--rounds 3]   # needs `make services-up`

Sends the same records (150-byte values, 3,000 keys, spread over 4 partitions as
the changelog writes are) both ways to a fresh topic on the local broker, `acks=-1`
and 5 ms linger as the worker's producer, and waits for every delivery. Prints the
process CPU time per record of each and their ratio, per round; deletes the topic.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from streams.sending import send_batched


async def main(args: argparse.Namespace) -> None:
    topic = f"bench-send-batch-{int(time.time())}"
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 4, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks=-1, linger_ms=5)
    await producer.start()
    try:
        records = [(topic, i % 4, f"acct-{i % 3000}".encode(), os.urandom(150))
                   for i in range(args.records)]
        await (await producer.send(topic, b"warm-up", key=b"k", partition=0))
        print(f"{'round':>5} {'send us/record':>15} {'send_batched us/record':>23} {'ratio':>6}")
        for round_ in range(args.rounds):
            cpu = time.process_time()
            futures = [await producer.send(t, v, key=k, partition=p) for t, p, k, v in records]
            await asyncio.gather(*futures)
            each = (time.process_time() - cpu) / len(records) * 1e6
            cpu = time.process_time()
            await asyncio.gather(*await send_batched(producer, records))
            batched = (time.process_time() - cpu) / len(records) * 1e6
            print(f"{round_ + 1:>5} {each:>15.1f} {batched:>23.1f} {each / batched:>5.1f}x")
    finally:
        await producer.stop()
        await admin.delete_topics([topic])
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap", default=os.environ.get("WARDEN_KAFKA_BOOTSTRAP",
                                                              "127.0.0.1:9092"))
    asyncio.run(main(parser.parse_args()))
