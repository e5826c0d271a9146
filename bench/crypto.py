"""Encrypted-field costs: encrypt+decrypt throughput, per-field read cost, rotate_keys per 10,000.

Run from the repository root: ``python bench/crypto.py``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import setup  # noqa: E402

VENDOR = setup("fp_bench_security")

from django.db import connection, models  # noqa: E402

from security import crypto  # noqa: E402
from security.fields import EncryptedTextField, EncryptionSubject  # noqa: E402
from security.ids import public_id_default  # noqa: E402
from security.keyring import build_keyring, set_keyring  # noqa: E402
from security.models import DataKey  # noqa: E402
from security.rotation import rotate_keys  # noqa: E402


class BenchRecord(models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("bch"))
    encryption_subject = EncryptionSubject("person")
    plain = models.TextField()
    secret = EncryptedTextField()

    class Meta:
        app_label = "bench"

    def __str__(self) -> str:
        return self.public_id


def main() -> None:
    value = os.urandom(100).hex()  # 200 bytes
    subject = crypto.Subject("person", "bench_subject")
    place = crypto.binding("bench_table", "secret", "row_1")
    crypto.encrypt(value.encode(), subject=subject, place=place)  # create and cache the data key
    n = 20_000
    started = time.perf_counter()
    for _ in range(n):
        token = crypto.encrypt(value.encode(), subject=subject, place=place)
        crypto.decrypt(token, place=place)
    elapsed = time.perf_counter() - started
    print(
        f"[{VENDOR}] encrypt+decrypt, 200-byte value: {n / elapsed:,.0f} pairs/s "
        f"({elapsed / n * 1e6:.1f} µs per pair)"
    )

    with connection.schema_editor() as editor:
        editor.create_model(BenchRecord)
    rows = 2_000
    BenchRecord.objects.bulk_create(
        [BenchRecord(plain=value, secret=value, public_id=f"bch_{i:08d}") for i in range(rows)],
        batch_size=500,
    )

    def read_cost(preload: bool, warm: bool) -> float:
        crypto.clear_key_cache()
        loaded = list(BenchRecord.objects.all())
        if warm:
            crypto.preload_keys(loaded)
            loaded = list(BenchRecord.objects.all())
        started = time.perf_counter()
        for record in loaded:
            _ = record.plain
        plain_cost = time.perf_counter() - started
        started = time.perf_counter()
        if preload:
            crypto.preload_keys(loaded)
        for record in loaded:
            _ = record.secret
        secret_cost = time.perf_counter() - started
        return (secret_cost - plain_cost) / rows * 1e6

    print(
        f"[{VENDOR}] encrypted read adds {read_cost(False, True):.1f} µs per field with the data key cached "
        f"(target < 50 µs); {read_cost(True, False):.1f} µs cold with preload_keys() (one query per page); "
        f"{read_cost(False, False):.1f} µs cold without it (one key lookup per subject), over {rows} rows, "
        "one subject per row"
    )

    # rotate_keys: one data key per subject, 10,000 subjects.
    count = 10_000
    from security.keyring import get_keyring

    keyring = get_keyring()
    batch = []
    for i in range(count):
        key_id = f"dk_bench{i:016d}"
        subj = crypto.Subject("person", f"usr_bench{i:08d}")
        kek, wrapped = keyring.wrap(os.urandom(32), crypto.wrap_context(key_id, subj))
        batch.append(
            DataKey(
                key_id=key_id, subject_kind=subj.kind, subject_id=subj.id, wrapped_key=wrapped, kek_id=kek
            )
        )
    DataKey.objects.bulk_create(batch, batch_size=1000)
    import base64

    old = os.environ["FIELD_ENCRYPTION_KEYS"]
    set_keyring(
        build_keyring(
            local_entries=[f"bench2:{base64.b64encode(os.urandom(32)).decode()}", old],
            kms_entries=[],
            debug=False,
        )
    )
    total = DataKey.objects.exclude(kek_id="bench2").count()
    started = time.perf_counter()
    run = rotate_keys(batch_size=500)
    elapsed = time.perf_counter() - started
    print(
        f"[{VENDOR}] rotate_keys: {run.done:,} data keys in {elapsed:.2f} s = "
        f"{elapsed / total * 10_000:.2f} s per 10,000 "
        "(values are not re-encrypted: one data key covers all of a subject's values)"
    )


if __name__ == "__main__":
    main()
