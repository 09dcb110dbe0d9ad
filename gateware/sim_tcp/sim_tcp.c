/*
 * sim_tcp: the SoC's serial byte stream on a TCP socket, for LiteX's Verilator sim.
 *
 * Listens on 127.0.0.1 only, on the "port" of its JSON args (0: the OS picks one) and
 * prints "sim_tcp: listening on 127.0.0.1:<port>" on stdout so a launcher never needs a
 * fixed port. One client at a time: a new connection replaces the current one.
 *
 * Host -> SoC bytes go through a ring that the socket is never read past, so a bulk
 * write is paced by the SoC instead of overrunning; a byte leaves the ring only when
 * the SoC takes it (sink ready). SoC -> host bytes are collected in a second ring during
 * a batch of clock cycles and sent with few send() calls once the sim returns to its
 * event loop; TCP_NODELAY sends each batch at once. With no client connected, output
 * is dropped like on an unplugged serial line so the SoC never stalls.
 *
 * All state is per instance except the event base, which LiteX hands to start() once
 * for the whole process.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <json-c/json.h>

#include "error.h"
#include "modules.h"

#define RING_SIZE 65536                  /* bytes per direction, a power of two */
#define POLL_CYCLES 32                   /* quiet cycles before tick()'s first socket poll */
#define POLL_CYCLES_MAX 512              /* its longest gap: the event loop polls every 500 cycles */

struct ring {
  uint8_t buf[RING_SIZE];
  size_t head;                           /* index of the oldest byte */
  size_t len;
};

struct session {
  /* Pads (Verilator CData); "sink" is host -> SoC, "source" is SoC -> host. */
  uint8_t *sys_clk;
  uint8_t *rx_data, *rx_valid, *rx_ready;
  uint8_t *tx_data, *tx_valid, *tx_ready;
  clk_edge_state_t edge;
  unsigned idle;                         /* cycles since the last byte each way */
  unsigned next_poll, poll_gap;          /* idle count of tick()'s next socket poll, and the gap to it */

  struct evconnlistener *listener;
  evutil_socket_t fd;                    /* the client, or -1 */
  struct event *rd_ev, *wr_ev;
  int rd_armed, wr_armed;
  struct ring rx, tx;
};

static struct event_base *sim_base;      /* the sim's one event loop */

static size_t ring_room(const struct ring *r) { return RING_SIZE - r->len; }

static void arm(struct session *s, struct event *ev, int *armed, int on)
{
  if (on && !*armed)
    event_add(ev, NULL);
  else if (!on && *armed)
    event_del(ev);
  *armed = on;
}

static void drop_client(struct session *s, const char *why)
{
  if (s->fd < 0)
    return;
  if (why)
    fprintf(stderr, "sim_tcp: client dropped: %s\n", why);
  arm(s, s->rd_ev, &s->rd_armed, 0);
  arm(s, s->wr_ev, &s->wr_armed, 0);
  event_free(s->rd_ev);
  event_free(s->wr_ev);
  s->rd_ev = s->wr_ev = NULL;
  evutil_closesocket(s->fd);
  s->fd = -1;
  s->tx.head = s->tx.len = 0;            /* output for a client that is gone */
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
  struct session *s = arg;
  size_t tail = (s->rx.head + s->rx.len) % RING_SIZE;
  size_t n = ring_room(&s->rx);
  ssize_t got;

  if (n > RING_SIZE - tail)
    n = RING_SIZE - tail;                /* up to the wrap; the rest on the next call */
  if (n == 0) {
    arm(s, s->rd_ev, &s->rd_armed, 0);   /* full: tick() re-arms once the SoC drains it */
    return;
  }
  got = recv(fd, s->rx.buf + tail, n, 0);
  if (got > 0) {
    s->rx.len += got;
    if (ring_room(&s->rx) == 0)
      arm(s, s->rd_ev, &s->rd_armed, 0);
  } else if (got == 0) {
    drop_client(s, NULL);                /* orderly close; received bytes still reach the SoC */
  } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    drop_client(s, strerror(errno));
  }
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
  struct session *s = arg;

  while (s->tx.len) {
    size_t n = s->tx.len;
    ssize_t sent;
    if (n > RING_SIZE - s->tx.head)
      n = RING_SIZE - s->tx.head;
    sent = send(fd, s->tx.buf + s->tx.head, n, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return;                          /* stay armed; the SoC waits while the ring is full */
      drop_client(s, strerror(errno));
      return;
    }
    s->tx.head = (s->tx.head + sent) % RING_SIZE;
    s->tx.len -= sent;
  }
  arm(s, s->wr_ev, &s->wr_armed, 0);
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd,
                      struct sockaddr *addr, int socklen, void *arg)
{
  struct session *s = arg;
  int one = 1;

  /* The newest client wins, as whoever opens a serial port last: a client that closed
   * just before its successor connected may not have been noticed yet, and a hung one
   * must not lock the port. */
  drop_client(s, s->fd >= 0 ? "a new client connected" : NULL);
  if (evutil_make_socket_nonblocking(fd) < 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
    fprintf(stderr, "sim_tcp: cannot set up the client socket: %s\n", strerror(errno));
    evutil_closesocket(fd);
    return;
  }
  s->fd = fd;
  s->rd_ev = event_new(sim_base, fd, EV_READ | EV_PERSIST, on_readable, s);
  s->wr_ev = event_new(sim_base, fd, EV_WRITE | EV_PERSIST, on_writable, s);
  s->rd_armed = s->wr_armed = 0;
  arm(s, s->rd_ev, &s->rd_armed, ring_room(&s->rx) > 0);
}

static void on_listen_error(struct evconnlistener *listener, void *arg)
{
  fprintf(stderr, "sim_tcp: accept failed: %s\n", strerror(EVUTIL_SOCKET_ERROR()));
}

static int parse_port(const char *args, int *port)
{
  json_object *root, *val;

  *port = 0;
  if (!args)
    return RC_OK;
  root = json_tokener_parse(args);
  if (!root || !json_object_is_type(root, json_type_object)) {
    fprintf(stderr, "sim_tcp: args must be a JSON object, got %s\n", args);
    return RC_JSERROR;
  }
  if (json_object_object_get_ex(root, "port", &val))
    *port = json_object_get_int(val);
  json_object_put(root);
  if (*port < 0 || *port > 65535) {
    fprintf(stderr, "sim_tcp: port %d out of range\n", *port);
    return RC_INVARG;
  }
  return RC_OK;
}

static int sim_tcp_start(void *base)
{
  sim_base = base;
  return RC_OK;
}

static int sim_tcp_new(void **sess, char *args)
{
  struct session *s;
  struct sockaddr_in sin;
  socklen_t len = sizeof(sin);
  int port, ret;

  *sess = NULL;
  if ((ret = parse_port(args, &port)) != RC_OK)
    return ret;
  s = calloc(1, sizeof(*s));
  if (!s)
    return RC_NOENMEM;
  s->fd = -1;
  s->next_poll = s->poll_gap = POLL_CYCLES;

  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(port);
  s->listener = evconnlistener_new_bind(sim_base, on_accept, s,
      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1, (struct sockaddr *)&sin, sizeof(sin));
  if (!s->listener) {
    fprintf(stderr, "sim_tcp: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
    free(s);
    return RC_ERROR;
  }
  evconnlistener_set_error_cb(s->listener, on_listen_error);
  if (getsockname(evconnlistener_get_fd(s->listener), (struct sockaddr *)&sin, &len) < 0) {
    fprintf(stderr, "sim_tcp: getsockname: %s\n", strerror(errno));
    evconnlistener_free(s->listener);
    free(s);
    return RC_ERROR;
  }
  printf("sim_tcp: listening on 127.0.0.1:%d\n", ntohs(sin.sin_port));
  fflush(stdout);
  *sess = s;
  return RC_OK;
}

static int sim_tcp_add_pads(void *sess, struct pad_list_s *plist)
{
  struct session *s = sess;
  struct pad_s *p;

  if (!s || !plist)
    return RC_INVARG;
  for (p = plist->pads; p->name; p++) {
    if (!strcmp(plist->name, "serial")) {
      if (!strcmp(p->name, "sink_data"))         s->rx_data = p->signal;
      else if (!strcmp(p->name, "sink_valid"))   s->rx_valid = p->signal;
      else if (!strcmp(p->name, "sink_ready"))   s->rx_ready = p->signal;
      else if (!strcmp(p->name, "source_data"))  s->tx_data = p->signal;
      else if (!strcmp(p->name, "source_valid")) s->tx_valid = p->signal;
      else if (!strcmp(p->name, "source_ready")) s->tx_ready = p->signal;
    } else if (!strcmp(plist->name, "sys_clk") && !strcmp(p->name, "sys_clk")) {
      s->sys_clk = p->signal;
    }
  }
  return RC_OK;
}

/*
 * Runs after each eval. On a rising edge the design has settled for the next edge, so
 * a valid/ready pair seen (or set) now is the transfer that edge makes: the SoC's
 * ready and valid never depend on ours combinationally.
 *
 * The sim returns to its event loop only every 500 cycles, which would add two such
 * slices to every bridge round trip; so once both directions have been quiet for
 * POLL_CYCLES cycles, tick() itself sends pending output and polls for input: a
 * non-blocking syscall, at gaps that double while the link stays quiet, up to
 * POLL_CYCLES_MAX (a host waiting seconds for a batch would otherwise cost a syscall every
 * 32 cycles; a round trip's next command comes within a few gaps). Output still leaves in
 * batches.
 */
static int sim_tcp_tick(void *sess, uint64_t time_ps)
{
  struct session *s = sess;
  int busy = 0;

  if (!s->sys_clk || !clk_pos_edge(&s->edge, *s->sys_clk))
    return RC_OK;
  if (!s->tx_valid || !s->rx_valid)
    return RC_ERROR;                     /* the "serial" pads were not connected */

  /* SoC -> host */
  *s->tx_ready = ring_room(&s->tx) > 0;
  if (*s->tx_ready && *s->tx_valid && s->fd >= 0) {
    s->tx.buf[(s->tx.head + s->tx.len) % RING_SIZE] = *s->tx_data;
    s->tx.len++;
    arm(s, s->wr_ev, &s->wr_armed, 1);
    busy = 1;
  }

  /* host -> SoC */
  if (s->rx.len) {
    *s->rx_data = s->rx.buf[s->rx.head];
    *s->rx_valid = 1;
    if (*s->rx_ready) {
      s->rx.head = (s->rx.head + 1) % RING_SIZE;
      s->rx.len--;
      busy = 1;
      if (s->fd >= 0 && !s->rd_armed && ring_room(&s->rx) >= RING_SIZE / 2)
        arm(s, s->rd_ev, &s->rd_armed, 1);
    }
  } else {
    *s->rx_valid = 0;
  }

  if (busy || *s->tx_valid) {
    s->idle = 0;
    s->next_poll = s->poll_gap = POLL_CYCLES;
  } else if (++s->idle == s->next_poll && s->fd >= 0) {
    if (s->tx.len)
      on_writable(s->fd, EV_WRITE, s);
    if (s->fd >= 0 && s->rx.len == 0)
      on_readable(s->fd, EV_READ, s);
    s->poll_gap = s->poll_gap < POLL_CYCLES_MAX ? 2 * s->poll_gap : POLL_CYCLES_MAX;
    s->next_poll = s->idle + s->poll_gap;
  }
  return RC_OK;
}

static int sim_tcp_close(void *sess)
{
  struct session *s = sess;

  if (!s)
    return RC_OK;
  drop_client(s, NULL);
  evconnlistener_free(s->listener);
  free(s);
  return RC_OK;
}

static struct ext_module_s ext_mod = {
  "sim_tcp",
  sim_tcp_start,
  sim_tcp_new,
  sim_tcp_add_pads,
  sim_tcp_close,
  sim_tcp_tick,
};

int litex_sim_ext_module_init(int (*register_module)(struct ext_module_s *))
{
  return register_module(&ext_mod);
}
