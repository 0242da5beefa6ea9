/*
 * nrfprov's mosquitto plugin: the AWS IoT Core behaviours mosquitto's ACL file cannot express.
 *
 * Built and loaded by nrfprov.cloud (see plugin.py for how and where it is compiled). Plugin API v5
 * of mosquitto 2.0 [mosquitto include/mosquitto_plugin.h, mosquitto_broker.h at v2.0.11].
 *
 * 1. Identity. The username (which the ACL file keys on) is the client certificate's first
 *    commonName, as mosquitto's own use_identity_as_username does. It is set here because in 2.0
 *    that option skips the MOSQ_EVT_BASIC_AUTH event, and the event is the only place a plugin sees a
 *    CONNECT [mosquitto src/handle_connect.c at v2.0.11].
 *
 * 2. One CONNECT per second per client ID. AWS IoT Core "restricts MQTT CONNECT requests from the
 *    same accountId and clientId to 1 MQTT CONNECT operation per second" [AWS General Reference,
 *    AWS IoT Core endpoints and quotas]. A faster CONNECT is answered by closing the connection without
 *    a CONNACK: AWS staff describe the service as hanging up on the second connection
 *    [aws/aws-iot-device-sdk-java issue 127]; the exact wire behaviour is not documented by AWS.
 *    The window runs from the last accepted CONNECT of that client ID (a refused attempt does not
 *    extend it; unconfirmed for AWS). The re-check mosquitto runs for every connected client after a
 *    configuration reload is recognised (the connection is already known) and never throttled.
 *
 * 3. Fleet Provisioning replies only on the requesting connection. AWS "returns the device
 *    provisioning MQTT API results through the same MQTT connection used to publish the API request"
 *    [AWS IoT developer guide, fleet-provision-api]. Every connection gets a serial number when it
 *    CONNECTs. A PUBLISH on a request topic reaches the responder with exactly one MQTT 5 user
 *    property, <marker> = <serial of the publishing connection>; any properties the client sent are
 *    dropped, so a client cannot claim another connection's serial. The responder publishes its reply
 *    on <route prefix>/<serial>/<reply topic>; this plugin rewrites the topic to <reply topic> and lets
 *    the deliveries that follow (the broker checks read access for each subscriber synchronously,
 *    right after this event [mosquitto src/handle_publish.c, src/subs.c at v2.0.11]) reach only the
 *    connection with that serial. The reply itself carries no marker, so nothing of it reaches a
 *    device. A reply on a reply topic that did not come through the route reaches nobody.
 *    The ACL event of 2.0.11 carries no message properties (security.c sets them to NULL), which is
 *    why the serial travels in the topic and not in a property of the reply.
 *
 * 4. Who asked. Each request also carries <client marker> = the publishing connection's MQTT client
 *    ID: the split workaround's topic rule reads it with clientid() [AWS IoT developer guide, SQL
 *    functions, clientid()] and the pre-provisioning hook's event has it as clientId [AWS IoT developer
 *    guide, pre-provisioning-hook]. Like the serial, it replaces whatever the client sent.
 *
 * Options (plugin_opt_<name> in mosquitto.conf): marker, client_marker, route_prefix, request_topics
 * and reply_topics (space-separated topic filters), connect_interval_ms (0 turns rule 2 off).
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/objects.h>
#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

/* Longest commonName we accept: AWS thing names are at most 128 characters [API_CreateThing]. */
#define CN_MAX 128
/* Topic filters per option; the stand-in uses 4 request and 6 reply filters. */
#define FILTERS_MAX 32
/* A serial is a uint64_t in decimal: at most 20 digits. */
#define SERIAL_DIGITS_MAX 20

struct filters {
	char *items[FILTERS_MAX];
	size_t count;
};

/* A connection that passed CONNECT and has not disconnected yet. */
struct conn {
	const struct mosquitto *client;
	uint64_t serial;
	struct conn *next;
};

/* When a client ID last CONNECTed; entries older than the interval are dropped as we go. */
struct recent {
	char *client_id;
	struct timespec at;
	struct recent *next;
};

struct state {
	mosquitto_plugin_id_t *pid;
	char *marker;
	char *client_marker;
	char *route_prefix;
	size_t route_prefix_len;
	struct filters requests;
	struct filters replies;
	long interval_ms;
	struct conn *conns;
	uint64_t next_serial;
	struct recent *recent;
	/* The reply being delivered: set by its MESSAGE event, cleared by the next one. */
	char *route_topic;
	uint64_t route_serial;
};

/* --- small helpers -------------------------------------------------------------------------- */

static void filters_free(struct filters *f)
{
	size_t i;

	for(i = 0; i < f->count; i++){
		mosquitto_free(f->items[i]);
		f->items[i] = NULL;
	}
	f->count = 0;
}

/* Split a space-separated list of topic filters into f. */
static int filters_parse(struct filters *f, const char *text)
{
	const char *p = text;

	while(*p != '\0'){
		const char *end;
		size_t len;
		char *item;

		while(*p == ' '){
			p++;
		}
		if(*p == '\0'){
			break;
		}
		end = strchr(p, ' ');
		len = end ? (size_t)(end - p) : strlen(p);
		if(f->count == FILTERS_MAX){
			mosquitto_log_printf(MOSQ_LOG_ERR, "nrfprov plugin: more than %d topic filters", FILTERS_MAX);
			return MOSQ_ERR_INVAL;
		}
		item = mosquitto_malloc(len + 1);
		if(item == NULL){
			return MOSQ_ERR_NOMEM;
		}
		memcpy(item, p, len);
		item[len] = '\0';
		if(mosquitto_sub_topic_check(item) != MOSQ_ERR_SUCCESS){
			mosquitto_log_printf(MOSQ_LOG_ERR, "nrfprov plugin: invalid topic filter '%s'", item);
			mosquitto_free(item);
			return MOSQ_ERR_INVAL;
		}
		f->items[f->count++] = item;
		p += len;
	}
	return MOSQ_ERR_SUCCESS;
}

static bool filters_match(const struct filters *f, const char *topic)
{
	size_t i;
	bool hit;

	for(i = 0; i < f->count; i++){
		hit = false;
		if(mosquitto_topic_matches_sub(f->items[i], topic, &hit) == MOSQ_ERR_SUCCESS && hit){
			return true;
		}
	}
	return false;
}

static long elapsed_ms(const struct timespec *from, const struct timespec *to)
{
	return (long)(to->tv_sec - from->tv_sec) * 1000L + (to->tv_nsec - from->tv_nsec) / 1000000L;
}

static struct conn *conn_find(const struct state *st, const struct mosquitto *client)
{
	struct conn *c;

	for(c = st->conns; c != NULL; c = c->next){
		if(c->client == client){
			return c;
		}
	}
	return NULL;
}

static int conn_add(struct state *st, const struct mosquitto *client)
{
	struct conn *c = mosquitto_calloc(1, sizeof(*c));

	if(c == NULL){
		return MOSQ_ERR_NOMEM;
	}
	c->client = client;
	c->serial = ++st->next_serial;
	c->next = st->conns;
	st->conns = c;
	return MOSQ_ERR_SUCCESS;
}

static void conn_remove(struct state *st, const struct mosquitto *client)
{
	struct conn **link = &st->conns;

	while(*link != NULL){
		if((*link)->client == client){
			struct conn *gone = *link;

			*link = gone->next;
			mosquitto_free(gone);
			return;
		}
		link = &(*link)->next;
	}
}

static void route_clear(struct state *st)
{
	mosquitto_free(st->route_topic);
	st->route_topic = NULL;
	st->route_serial = 0;
}

/* --- 1. identity ---------------------------------------------------------------------------- */

/* The certificate's first commonName into cn (NUL-terminated). False if there is none, it holds a
 * NUL byte, or it does not fit. */
static bool cert_common_name(const struct mosquitto *client, char *cn, size_t cn_size)
{
	X509 *cert = mosquitto_client_certificate(client);
	X509_NAME *name;
	X509_NAME_ENTRY *entry;
	ASN1_STRING *data;
	const unsigned char *bytes;
	int index;
	int len;
	bool ok = false;

	if(cert == NULL){
		return false;
	}
	name = X509_get_subject_name(cert);
	index = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
	entry = index >= 0 ? X509_NAME_get_entry(name, index) : NULL;
	data = entry ? X509_NAME_ENTRY_get_data(entry) : NULL;
	if(data != NULL){
		bytes = ASN1_STRING_get0_data(data);
		len = ASN1_STRING_length(data);
		if(bytes != NULL && len > 0 && (size_t)len < cn_size && memchr(bytes, '\0', (size_t)len) == NULL){
			memcpy(cn, bytes, (size_t)len);
			cn[len] = '\0';
			ok = true;
		}
	}
	X509_free(cert);
	return ok;
}

/* --- 2. CONNECT quota ----------------------------------------------------------------------- */

/* Forget CONNECTs older than the interval; return the entry of client_id, if still recent. */
static struct recent *recent_prune_find(struct state *st, const char *client_id, const struct timespec *now)
{
	struct recent **link = &st->recent;
	struct recent *found = NULL;

	while(*link != NULL){
		struct recent *r = *link;

		if(elapsed_ms(&r->at, now) >= st->interval_ms){
			*link = r->next;
			mosquitto_free(r->client_id);
			mosquitto_free(r);
			continue;
		}
		if(strcmp(r->client_id, client_id) == 0){
			found = r;
		}
		link = &r->next;
	}
	return found;
}

static int recent_add(struct state *st, const char *client_id, const struct timespec *now)
{
	struct recent *r = mosquitto_calloc(1, sizeof(*r));

	if(r == NULL){
		return MOSQ_ERR_NOMEM;
	}
	r->client_id = mosquitto_strdup(client_id);
	if(r->client_id == NULL){
		mosquitto_free(r);
		return MOSQ_ERR_NOMEM;
	}
	r->at = *now;
	r->next = st->recent;
	st->recent = r;
	return MOSQ_ERR_SUCCESS;
}

/* A new connection's CONNECT: MOSQ_ERR_SUCCESS, or MOSQ_ERR_CONN_REFUSED when it comes too soon
 * (any code but MOSQ_ERR_AUTH makes mosquitto close the connection without a CONNACK). */
static int connect_check(struct state *st, const struct mosquitto *client)
{
	const char *client_id = mosquitto_client_id(client);
	struct timespec now;
	struct recent *last;

	if(client_id == NULL){
		return MOSQ_ERR_AUTH;
	}
	if(st->interval_ms <= 0){
		return MOSQ_ERR_SUCCESS;
	}
	if(clock_gettime(CLOCK_MONOTONIC, &now) != 0){
		return MOSQ_ERR_ERRNO;
	}
	last = recent_prune_find(st, client_id, &now);
	if(last != NULL){
		mosquitto_log_printf(MOSQ_LOG_NOTICE,
				"nrfprov plugin: refused CONNECT of client ID %s: its previous CONNECT was %ld ms ago "
				"(AWS IoT allows one per %ld ms)",
				client_id, elapsed_ms(&last->at, &now), st->interval_ms);
		return MOSQ_ERR_CONN_REFUSED;
	}
	return recent_add(st, client_id, &now);
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	struct state *st = userdata;
	char cn[CN_MAX + 1];
	int rc;

	(void)event;
	if(!cert_common_name(ed->client, cn, sizeof(cn))){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "nrfprov plugin: client certificate without a usable commonName");
		return MOSQ_ERR_AUTH;
	}
	/* Known connection: this is mosquitto re-checking every client after a reload, not a CONNECT. */
	if(conn_find(st, ed->client) == NULL){
		rc = connect_check(st, ed->client);
		if(rc != MOSQ_ERR_SUCCESS){
			return rc;
		}
		rc = conn_add(st, ed->client);
		if(rc != MOSQ_ERR_SUCCESS){
			return rc;
		}
	}
	return mosquitto_set_username(ed->client, cn);
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;

	(void)event;
	conn_remove(userdata, ed->client);
	return MOSQ_ERR_SUCCESS;
}

/* --- 3. Fleet Provisioning replies ---------------------------------------------------------- */

/* A request: replace the message's properties with the markers naming its connection and client ID. */
static int tag_request(struct state *st, struct mosquitto_evt_message *ed)
{
	const struct conn *c = conn_find(st, ed->client);
	const char *client_id = mosquitto_client_id(ed->client);
	mosquitto_property *props = NULL;
	char serial[SERIAL_DIGITS_MAX + 1];
	int rc;

	if(c == NULL || client_id == NULL){
		mosquitto_log_printf(MOSQ_LOG_ERR, "nrfprov plugin: request on %s from an unknown connection", ed->topic);
		return MOSQ_ERR_ACL_DENIED;
	}
	snprintf(serial, sizeof(serial), "%" PRIu64, c->serial);
	rc = mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, st->marker, serial);
	if(rc == MOSQ_ERR_SUCCESS){
		rc = mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, st->client_marker, client_id);
	}
	if(rc != MOSQ_ERR_SUCCESS){
		mosquitto_property_free_all(&props);
		return rc;
	}
	mosquitto_property_free_all(&ed->properties);
	ed->properties = props;
	return MOSQ_ERR_SUCCESS;
}

/* The serial in "<digits>/..." at p, or 0 if there is none; *rest points after the slash. */
static uint64_t parse_serial(const char *p, const char **rest)
{
	uint64_t serial = 0;
	size_t i;

	for(i = 0; p[i] >= '0' && p[i] <= '9'; i++){
		if(i == SERIAL_DIGITS_MAX || serial > (UINT64_MAX - 9) / 10){
			return 0;
		}
		serial = serial * 10 + (uint64_t)(p[i] - '0');
	}
	if(i == 0 || p[i] != '/'){
		return 0;
	}
	*rest = p + i + 1;
	return serial;
}

/* <route prefix>/<serial>/<reply topic>: deliver <reply topic> to connection <serial> only. */
static int route_reply(struct state *st, struct mosquitto_evt_message *ed)
{
	const char *reply = NULL;
	uint64_t serial = parse_serial(ed->topic + st->route_prefix_len + 1, &reply);
	char *topic;
	char *copy;

	if(serial == 0 || !filters_match(&st->replies, reply)){
		mosquitto_log_printf(MOSQ_LOG_ERR, "nrfprov plugin: %s is not <route>/<serial>/<reply topic>", ed->topic);
		return MOSQ_ERR_ACL_DENIED;
	}
	topic = mosquitto_strdup(reply);
	copy = mosquitto_strdup(reply);
	if(topic == NULL || copy == NULL){
		mosquitto_free(topic);
		mosquitto_free(copy);
		return MOSQ_ERR_NOMEM;
	}
	/* The broker adopts ed->topic but does not free the topic it replaced [src/plugin.c]. */
	mosquitto_free(ed->topic);
	ed->topic = topic;
	st->route_topic = copy;
	st->route_serial = serial;
	return MOSQ_ERR_SUCCESS;
}

static int on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ed = event_data;
	struct state *st = userdata;

	(void)event;
	route_clear(st);
	if(strncmp(ed->topic, st->route_prefix, st->route_prefix_len) == 0 && ed->topic[st->route_prefix_len] == '/'){
		return route_reply(st, ed);
	}
	if(filters_match(&st->replies, ed->topic)){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "nrfprov plugin: reply on %s did not come through %s/<serial>/: "
				"it reaches nobody", ed->topic, st->route_prefix);
		return MOSQ_ERR_SUCCESS;
	}
	if(filters_match(&st->requests, ed->topic)){
		return tag_request(st, ed);
	}
	return MOSQ_ERR_SUCCESS;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	struct state *st = userdata;
	const struct conn *c;

	(void)event;
	if(ed->access != MOSQ_ACL_READ || !filters_match(&st->replies, ed->topic)){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	c = conn_find(st, ed->client);
	if(st->route_topic != NULL && c != NULL && c->serial == st->route_serial && strcmp(ed->topic, st->route_topic) == 0){
		return MOSQ_ERR_PLUGIN_DEFER; /* the requesting connection: the ACL file still decides */
	}
	return MOSQ_ERR_ACL_DENIED;
}

/* --- plugin entry points -------------------------------------------------------------------- */

static void state_free(struct state *st)
{
	while(st->conns != NULL){
		struct conn *c = st->conns;

		st->conns = c->next;
		mosquitto_free(c);
	}
	while(st->recent != NULL){
		struct recent *r = st->recent;

		st->recent = r->next;
		mosquitto_free(r->client_id);
		mosquitto_free(r);
	}
	route_clear(st);
	filters_free(&st->requests);
	filters_free(&st->replies);
	mosquitto_free(st->marker);
	mosquitto_free(st->client_marker);
	mosquitto_free(st->route_prefix);
	mosquitto_free(st);
}

static int option(struct state *st, const char *key, const char *value)
{
	char *endp;
	long ms;

	if(strcmp(key, "marker") == 0 || strcmp(key, "client_marker") == 0 || strcmp(key, "route_prefix") == 0){
		char **slot = key[0] == 'm' ? &st->marker : key[0] == 'c' ? &st->client_marker : &st->route_prefix;

		mosquitto_free(*slot);
		*slot = mosquitto_strdup(value);
		return *slot ? MOSQ_ERR_SUCCESS : MOSQ_ERR_NOMEM;
	}
	if(strcmp(key, "request_topics") == 0){
		return filters_parse(&st->requests, value);
	}
	if(strcmp(key, "reply_topics") == 0){
		return filters_parse(&st->replies, value);
	}
	if(strcmp(key, "connect_interval_ms") == 0){
		errno = 0;
		ms = strtol(value, &endp, 10);
		if(errno != 0 || endp == value || *endp != '\0' || ms < 0 || ms > 3600000L){
			mosquitto_log_printf(MOSQ_LOG_ERR, "nrfprov plugin: connect_interval_ms must be 0..3600000");
			return MOSQ_ERR_INVAL;
		}
		st->interval_ms = ms;
		return MOSQ_ERR_SUCCESS;
	}
	mosquitto_log_printf(MOSQ_LOG_ERR, "nrfprov plugin: unknown option %s", key);
	return MOSQ_ERR_INVAL;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	int i;

	for(i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5){
			return 5;
		}
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options, int option_count)
{
	struct state *st = mosquitto_calloc(1, sizeof(*st));
	int rc = MOSQ_ERR_SUCCESS;
	int i;

	if(st == NULL){
		return MOSQ_ERR_NOMEM;
	}
	st->pid = identifier;
	st->interval_ms = 1000;
	for(i = 0; i < option_count && rc == MOSQ_ERR_SUCCESS; i++){
		rc = option(st, options[i].key, options[i].value);
	}
	if(rc == MOSQ_ERR_SUCCESS && (st->marker == NULL || st->client_marker == NULL || st->route_prefix == NULL
				|| st->route_prefix[0] == '\0')){
		mosquitto_log_printf(MOSQ_LOG_ERR, "nrfprov plugin: plugin_opt_marker, plugin_opt_client_marker and "
				"plugin_opt_route_prefix are required");
		rc = MOSQ_ERR_INVAL;
	}
	if(rc != MOSQ_ERR_SUCCESS){
		state_free(st);
		return rc;
	}
	st->route_prefix_len = strlen(st->route_prefix);
	*userdata = st;
	rc = mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, st);
	if(rc == MOSQ_ERR_SUCCESS){
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, st);
	}
	if(rc == MOSQ_ERR_SUCCESS){
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, on_message, NULL, st);
	}
	if(rc == MOSQ_ERR_SUCCESS){
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, st);
	}
	return rc;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	struct state *st = userdata;

	(void)options;
	(void)option_count;
	if(st == NULL){
		return MOSQ_ERR_SUCCESS;
	}
	mosquitto_callback_unregister(st->pid, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(st->pid, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	mosquitto_callback_unregister(st->pid, MOSQ_EVT_MESSAGE, on_message, NULL);
	mosquitto_callback_unregister(st->pid, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	state_free(st);
	return MOSQ_ERR_SUCCESS;
}
