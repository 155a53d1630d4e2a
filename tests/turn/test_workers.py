"""``[turn] workers``: shard arithmetic, counter reports and the checks made before spawning (no processes)."""

from __future__ import annotations

import json

from twisted.trial import unittest

from webrtcstack.config import ConfigError, parse_config
from webrtcstack.turn.adapters.driver import Shard, build_engine
from webrtcstack.turn.adapters.workers import (TurnWorkersService, WorkerProtocol, apply_snapshot,
                                               check_workers_config, counters_snapshot)
from webrtcstack.turn.allocation import TurnCounters


class ShardTests(unittest.TestCase):
    def test_relay_ports_split_into_disjoint_covering_slices(self) -> None:
        """The N slices of relay_ports are disjoint, in order, and cover the whole range."""
        for low, high, count in ((49152, 65535, 2), (40000, 40006, 3), (1000, 1015, 16), (5, 5, 1)):
            slices = [Shard(i, count).relay_ports((low, high)) for i in range(count)]
            self.assertEqual(slices[0][0], low)
            self.assertEqual(slices[-1][1], high)
            for (a_low, a_high), (b_low, _) in zip(slices, slices[1:]):
                self.assertLessEqual(a_low, a_high)
                self.assertEqual(b_low, a_high + 1)

    def test_too_few_ports_is_an_error(self) -> None:
        """A range smaller than the number of workers cannot be split."""
        self.assertRaises(ValueError, Shard(0, 4).relay_ports, (1000, 1002))

    def test_total_quota_rounds_up(self) -> None:
        """Each shard holds ceil(total_quota / N)."""
        self.assertEqual([Shard(0, n).total_quota(10000) for n in (1, 2, 3, 16)], [10000, 5000, 3334, 625])
        self.assertEqual(Shard(1, 2).total_quota(1), 1)

    def test_bad_index(self) -> None:
        """A shard index outside 0..N-1 is refused."""
        self.assertRaises(ValueError, Shard, 2, 2)

    def test_engine_gets_the_shard(self) -> None:
        """build_engine gives shard 1 of 2 the upper half of the ports and half the quota, and keeps the nonce key."""
        config = parse_config("[turn]\nrelay_ip = 127.0.0.1\nrelay_ports = 40000-40999\ntotal_quota = 101\n", "t.ini")
        driver = build_engine(config, None, ("secret",), shard=Shard(1, 2), nonce_key=b"k" * 32)
        self.assertEqual(driver.engine.settings.relay_ports, (40500, 40999))
        self.assertEqual(driver.engine.settings.total_quota, 51)


class SnapshotTests(unittest.TestCase):
    def test_round_trip_through_json(self) -> None:
        """A counters snapshot survives JSON and sets every counter of another TurnCounters, tuple keys included."""
        counters = TurnCounters()
        counters.packets_to_peer, counters.bytes_to_client, counters.peers_denied = 3, 700, 2
        counters.allocations_active[("ipv4", "udp")] = 5
        counters.allocations_total[("ipv6", "tcp")] = 9
        counters.requests[("allocate", "ok")] = 4
        counters.auth_failures["stale_nonce"] = 1
        counters.drop("malformed")
        copy = TurnCounters()
        apply_snapshot(copy, json.loads(json.dumps(counters_snapshot(counters))))
        self.assertEqual(vars(copy), vars(counters))

    def test_worker_protocol_reads_lines_across_chunks(self) -> None:
        """Reports split across reads are put together; a bad line is skipped; busy() is the active allocations."""
        worker = WorkerProtocol(1, b"{}\n")
        counters = TurnCounters()
        counters.allocations_active[("ipv4", "udp")] = 7
        line = json.dumps(counters_snapshot(counters)).encode() + b"\n"
        worker.outReceived(b"not json\n" + line[:10])
        self.assertEqual(worker.reports, 0)
        worker.outReceived(line[10:])
        self.assertEqual((worker.reports, worker.busy()), (1, 7))


class CheckTests(unittest.TestCase):
    def test_workers_need_a_file_and_fixed_ports(self) -> None:
        """workers > 1 is refused without a config file or with a listen port 0; workers = 1 is never checked."""
        self.assertRaises(ValueError, check_workers_config, parse_config("[turn]\nworkers = 2\n", "<text>"))
        self.assertRaises(ConfigError, parse_config, "[turn]\nworkers = 2\nlisten = 127.0.0.1:0\n", "t.ini")
        check_workers_config(parse_config("[turn]\nworkers = 2\nlisten = 127.0.0.1:3478\n", "t.ini"))
        check_workers_config(parse_config("[turn]\nlisten = 127.0.0.1:0\n", "<text>"))

    def test_service_has_one_protocol_per_extra_shard(self) -> None:
        """workers = 3 makes shards 1 and 2 (shard 0 is the main process)."""
        config = parse_config("[turn]\nworkers = 3\n", "t.ini")
        svc = TurnWorkersService(config, None, nonce_key=b"k" * 32, auth_secrets=("s",))
        self.assertEqual([w.index for w in svc.workers], [1, 2])
        self.assertEqual(json.loads(svc.workers[0].hello), {"nonce_key": "6b" * 32, "auth_secrets": ["s"]})
