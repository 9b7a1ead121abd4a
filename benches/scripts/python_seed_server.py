#!/usr/bin/env python3
"""The seed's pooled TCP server, as the network benchmark's Python peer.

    python3 benches/scripts/python_seed_server.py --addr 127.0.0.1:0 [--workers 3] [--backlog 1024] [--print]

The design is the seed's (section 3.1 of the seed document): a ThreadPoolExecutor of 3 workers;
the main thread accepts in a loop and submits each connection to the pool; a worker serves
its connection for the connection's whole life with recv(1024) and send(data.upper()).

Changes from the seed, none of which alters that design:
- --addr (port 0 picks a free port) and the first stdout line `listening on <ip>:<port>`,
  as `chi serve` prints, so the benchmark can start it the same way;
- the listen backlog defaults to 1024 instead of the seed's 5, so that connecting 1,000 or
  10,000 clients is not slowed by dropped SYNs (connecting is not measured);
- printing each message, as the seed does, is off unless --print is given;
- the connection is closed when its loop ends (the seed leaves that to the garbage collector),
  and an OSError other than ConnectionResetError also ends the connection instead of the
  worker's task silently.
"""

import argparse
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def communication(conn, verbose):
    """The seed's communication loop."""
    try:
        while True:
            try:
                data = conn.recv(1024)
                if len(data) == 0:
                    break
                if verbose:
                    print(data.decode("utf-8", "replace"))
                conn.send(data.upper())
            except ConnectionResetError:
                break
            except OSError:
                break
    finally:
        conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:0", help="host:port to listen on")
    parser.add_argument("--workers", type=int, default=3, help="pool size (the seed: 3)")
    parser.add_argument("--backlog", type=int, default=1024, help="listen backlog (the seed: 5)")
    parser.add_argument("--print", action="store_true", help="print each message, as the seed does")
    args = parser.parse_args()
    host, _, port = args.addr.rpartition(":")

    pool = ThreadPoolExecutor(args.workers)
    phone = socket.socket()
    phone.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    phone.bind((host, int(port)))
    phone.listen(args.backlog)
    ip, bound_port = phone.getsockname()[:2]
    print(f"listening on {ip}:{bound_port}", flush=True)
    try:
        while True:  # the connection loop
            try:
                connection = phone.accept()
            except OSError as e:  # EMFILE and friends: the seed would die here
                print(f"python_seed_server: accept: {e}", file=sys.stderr)
                time.sleep(0.01)
                continue
            pool.submit(communication, connection[0], args.print)
    except KeyboardInterrupt:
        pass
    finally:
        phone.close()
        pool.shutdown(wait=False)


if __name__ == "__main__":
    main()
