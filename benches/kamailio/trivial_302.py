# A trivial single-threaded UDP loop answering every INVITE with a 302, ACKs ignored: issue 5's
# yardstick ("a trivial single-threaded Python loop that answers 302 already needs under half
# of [Kamailio's CPU]"), run by compare.sh with SERVERS="python". It checks nothing, keeps no
# state and writes nothing: what a call costs here is the kernel's UDP and wake-up work plus
# the interpreter's. Usage: python3 trivial_302.py PORT
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    data, addr = s.recvfrom(65535)
    if not data.startswith(b"INVITE"):
        continue
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    keep = [h for h in head[1:] if h[:4].lower() in (b"via:", b"from", b"to: ", b"call", b"cseq")]
    user = head[0].split(b" ")[1].split(b"@")[0].split(b":")[-1]
    resp = b"SIP/2.0 302 Moved Temporarily\r\n" + b"\r\n".join(keep) + b"\r\nContact: <sip:" + user + b"@sbc.example.com>\r\nContent-Length: 0\r\n\r\n"
    s.sendto(resp, addr)
