#!/usr/bin/env python3
"""Relays TCP connections from LISTEN_ADDR:LISTEN_PORT to TARGET_ADDR:TARGET_PORT.

The lab's control plane serves its API (HTTPS) on loopback only, so lab.sh runs
this inside the control plane's namespace to let the workers reach it on the
control plane's lab address.
"""
import socket
import sys
import threading


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(conn, target):
    try:
        upstream = socket.create_connection(target, timeout=5)
    except OSError as e:
        print(f"forward: {target[0]}:{target[1]}: {e}", file=sys.stderr, flush=True)
        conn.close()
        return
    upstream.settimeout(None)
    threading.Thread(target=pipe, args=(conn, upstream), daemon=True).start()
    pipe(upstream, conn)
    upstream.close()
    conn.close()


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: forward.py LISTEN_ADDR LISTEN_PORT TARGET_ADDR TARGET_PORT")
    listen = (sys.argv[1], int(sys.argv[2]))
    target = (sys.argv[3], int(sys.argv[4]))
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(listen)
    server.listen(128)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn, target), daemon=True).start()


if __name__ == "__main__":
    main()
