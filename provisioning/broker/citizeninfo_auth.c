/*
 * citizeninfo_auth: a Mosquitto 2.0 plugin (API v5) that refuses subscriptions outside an
 * account's read rows of the acl_file, and every $share/ subscription except from the accounts
 * named in plugin_opt_share_accounts. Why: Mosquitto 2.0's acl_file grants any SUBSCRIBE and
 * filters delivery by the read ACL, so a kiosk could join the collectors' shared group and make
 * the broker drop every second visit (issue 9). Publishing and delivery are deferred to the
 * acl_file, so its %u patterns keep working, except for revoked accounts (below).
 *
 *   plugin /usr/lib/mosquitto/citizeninfo_auth.so
 *   plugin_opt_acl_file /etc/mosquitto/acl        (the same file as acl_file; re-read on SIGHUP)
 *   plugin_opt_share_accounts collector-1 collector-2
 *
 * A filter is allowed when every topic it can match is matched by one of the account's
 * "topic read|readwrite" rows or a "pattern read|readwrite" row with %u/%c set to the user name
 * (%c is the client id to the acl_file; the fleet's broker sets use_username_as_clientid, so the
 * two are one). The acl rows are re-read on SIGHUP; the share accounts only at start.
 *
 * Revocation (kiosk-fleet revoke, issue 18):
 *
 *   plugin_opt_revoked_file /etc/mosquitto/revoked   (a name a line; re-read on SIGHUP)
 *   plugin_opt_revoked_retained citizeninfo/v1/kiosk/%u/status citizeninfo/v1/cmd/%u/cert ...
 *
 * A listed account is refused at password login (MOSQ_EVT_BASIC_AUTH) and in every ACL check
 * (publish, delivery, subscribe), so a session it left on the broker gets nothing queued. At
 * each load the listed accounts still connected are kicked (no will), and the retained
 * messages of the revoked_retained topics (%u: the name) of each name new to the list are
 * deleted with an empty retained message. A certificate client never reaches basic auth
 * (use_identity_as_username): the listener's crlfile is what refuses its reconnect.
 * Built by ./dev into .cache/broker/; see provisioning/broker/README.md and docs/broker.md.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define SHARE_PREFIX "$share/"
#define LINE_MAX_LEN 1024

struct row {
	char *user;   /* NULL: a pattern row for every account */
	char *filter;
};

struct policy {
	char *acl_path;
	char *share_accounts; /* " name name " with spaces around each, for a whole-word search */
	struct row *rows;
	size_t row_count;
	char *revoked_path;
	char **revoked;        /* the names of revoked_path */
	size_t revoked_count;
	char *retained;        /* revoked_retained: topic templates, space separated */
};

static mosquitto_plugin_id_t *plugin_id;
static struct policy policy;

static void free_rows(void)
{
	for(size_t i = 0; i < policy.row_count; i++){
		free(policy.rows[i].user);
		free(policy.rows[i].filter);
	}
	free(policy.rows);
	policy.rows = NULL;
	policy.row_count = 0;
}

static char *trim(char *s)
{
	while(*s == ' ' || *s == '\t') s++;
	size_t n = strlen(s);
	while(n > 0 && strchr(" \t\r\n", s[n-1])) s[--n] = '\0';
	return s;
}

/* Keep the read rows of an acl_file: "user NAME", "topic [read|readwrite] F", "pattern ... F". */
static int load_rows(void)
{
	FILE *file = fopen(policy.acl_path, "r");
	if(!file){
		mosquitto_log_printf(MOSQ_LOG_ERR, "citizeninfo_auth: cannot read %s", policy.acl_path);
		return MOSQ_ERR_INVAL;
	}
	free_rows();
	char line[LINE_MAX_LEN], user[LINE_MAX_LEN] = "";
	bool has_user = false;
	int rc = MOSQ_ERR_SUCCESS;
	while(rc == MOSQ_ERR_SUCCESS && fgets(line, sizeof line, file)){
		if(!strchr(line, '\n') && !feof(file)){
			/* Longer than any row we write: refuse the file rather than read its tail as a
			 * row of its own. */
			mosquitto_log_printf(MOSQ_LOG_ERR, "citizeninfo_auth: a line of %s is over %d "
					"characters", policy.acl_path, LINE_MAX_LEN - 2);
			rc = MOSQ_ERR_INVAL;
			break;
		}
		char *text = trim(line);
		bool is_pattern = !strncmp(text, "pattern ", 8);
		if(!strncmp(text, "user ", 5)){
			snprintf(user, sizeof user, "%s", trim(text + 5));
			has_user = true;
			continue;
		}
		if(!is_pattern && strncmp(text, "topic ", 6)) continue;
		char *filter = trim(text + (is_pattern ? 8 : 6));
		if(!strncmp(filter, "readwrite ", 10)) filter = trim(filter + 10);
		else if(!strncmp(filter, "read ", 5)) filter = trim(filter + 5);
		else if(!strncmp(filter, "write ", 6) || !strncmp(filter, "deny ", 5)) continue;
		if(!is_pattern && !has_user) continue; /* anonymous rows: anonymous is refused anyway */
		struct row *grown = realloc(policy.rows, (policy.row_count + 1) * sizeof *grown);
		if(!grown){ rc = MOSQ_ERR_NOMEM; break; }
		policy.rows = grown;
		struct row *row = &policy.rows[policy.row_count];
		row->user = is_pattern ? NULL : strdup(user);
		row->filter = strdup(filter);
		policy.row_count++; /* counted at once, so free_rows() frees a half-built row too */
		if(!row->filter || (!is_pattern && !row->user)){ rc = MOSQ_ERR_NOMEM; break; }
	}
	fclose(file);
	return rc;
}

/* The length of the level starting at s (up to '/' or the end). */
static size_t level_len(const char *s)
{
	const char *slash = strchr(s, '/');
	return slash ? (size_t)(slash - s) : strlen(s);
}

static bool level_is(const char *s, size_t n, const char *want)
{
	return n == strlen(want) && !strncmp(s, want, n);
}

/* Whether every topic the subscription filter can match is also matched by the row's filter
 * (%u and %c as a whole level stand for the user name), compared level by level. */
static bool is_within(const char *sub, const char *row, const char *user)
{
	for(;;){
		size_t rn = level_len(row), sn = level_len(sub);
		if(level_is(row, rn, "#")) return true;
		if(level_is(sub, sn, "#")) return false;
		if(level_is(row, rn, "%u") || level_is(row, rn, "%c")){
			if(!level_is(sub, sn, user)) return false;
		}else if(!level_is(row, rn, "+")){
			if(level_is(sub, sn, "+") || sn != rn || strncmp(sub, row, rn)) return false;
		}
		sub += sn;
		row += rn;
		if(*sub == '\0') return *row == '\0' || !strcmp(row, "/#"); /* "a/#" matches "a" */
		if(*row == '\0') return false;
		sub++;
		row++;
	}
}

static bool may_share(const char *user)
{
	if(!policy.share_accounts) return false;
	size_t n = strlen(user) + 3;
	char *word = malloc(n);
	if(!word) return false;
	snprintf(word, n, " %s ", user);
	bool found = strstr(policy.share_accounts, word) != NULL;
	free(word);
	return found;
}

static bool may_subscribe(const char *user, const char *filter)
{
	if(!strncmp(filter, SHARE_PREFIX, strlen(SHARE_PREFIX))){
		if(!may_share(user)) return false;
		const char *group_end = strchr(filter + strlen(SHARE_PREFIX), '/');
		if(!group_end) return false;
		filter = group_end + 1;
	}
	/* A user name that could act as a wildcard never matches a %u level. */
	bool is_plain_user = !strpbrk(user, "/+#");
	for(size_t i = 0; i < policy.row_count; i++){
		const struct row *row = &policy.rows[i];
		if(row->user ? strcmp(row->user, user) : !is_plain_user) continue;
		if(is_within(filter, row->filter, user)) return true;
	}
	return false;
}

static bool is_listed(char **names, size_t count, const char *user)
{
	for(size_t i = 0; i < count; i++){
		if(!strcmp(names[i], user)) return true;
	}
	return false;
}

static bool is_revoked(const char *user)
{
	return user && is_listed(policy.revoked, policy.revoked_count, user);
}

static void free_names(char **names, size_t count)
{
	for(size_t i = 0; i < count; i++) free(names[i]);
	free(names);
}

/* Delete the retained message of each revoked_retained template, %u levels set to name. */
static void clear_retained(const char *name)
{
	if(!policy.retained) return;
	char *templates = strdup(policy.retained), *saved = NULL;
	if(!templates) return;
	for(char *t = strtok_r(templates, " \t", &saved); t; t = strtok_r(NULL, " \t", &saved)){
		char topic[LINE_MAX_LEN];
		size_t used = 0;
		bool fits = true;
		for(const char *c = t; *c && fits; c++){
			bool is_user = c[0] == '%' && c[1] == 'u';
			size_t n = is_user ? strlen(name) : 1;
			fits = used + n < sizeof topic;
			if(fits) memcpy(topic + used, is_user ? name : c, n);
			used += n;
			if(is_user) c++;
		}
		if(!fits) continue; /* longer than any topic of the fleet: nothing retained there */
		topic[used] = '\0';
		mosquitto_broker_publish_copy(NULL, topic, 0, NULL, 1, true, NULL);
	}
	free(templates);
}

/* Read revoked_file; kick every listed account, clear the retained messages of names new to
 * the list. A missing file is an empty list (nothing revoked yet). */
static int load_revoked(void)
{
	if(!policy.revoked_path) return MOSQ_ERR_SUCCESS;
	char **names = NULL;
	size_t count = 0;
	FILE *file = fopen(policy.revoked_path, "r");
	if(!file && errno != ENOENT){
		/* Unreadable is not empty: keep refusing the names read before. */
		mosquitto_log_printf(MOSQ_LOG_ERR, "citizeninfo_auth: cannot read %s",
				policy.revoked_path);
		return MOSQ_ERR_INVAL;
	}
	if(file){
		char line[LINE_MAX_LEN];
		while(fgets(line, sizeof line, file)){
			char *name = trim(line);
			if(!*name || *name == '#' || is_listed(names, count, name)) continue;
			char **grown = realloc(names, (count + 1) * sizeof *grown);
			if(!grown || !(grown[count] = strdup(name))){
				names = grown ? grown : names;
				fclose(file);
				free_names(names, count);
				return MOSQ_ERR_NOMEM;
			}
			names = grown;
			count++;
		}
		fclose(file);
	}
	for(size_t i = 0; i < count; i++){
		mosquitto_kick_client_by_username(names[i], false);
		if(!is_listed(policy.revoked, policy.revoked_count, names[i])){
			clear_retained(names[i]);
			mosquitto_log_printf(MOSQ_LOG_NOTICE, "citizeninfo_auth: %s is revoked", names[i]);
		}
	}
	free_names(policy.revoked, policy.revoked_count);
	policy.revoked = names;
	policy.revoked_count = count;
	return MOSQ_ERR_SUCCESS;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_basic_auth *auth = event_data;
	if(!is_revoked(auth->username)) return MOSQ_ERR_PLUGIN_DEFER;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "citizeninfo_auth: refused the revoked %s",
			auth->username);
	return MOSQ_ERR_AUTH;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_acl_check *check = event_data;
	const char *user = mosquitto_client_username(check->client);
	if(is_revoked(user)) return MOSQ_ERR_ACL_DENIED;
	if(check->access != MOSQ_ACL_SUBSCRIBE) return MOSQ_ERR_PLUGIN_DEFER;
	if(user && may_subscribe(user, check->topic)) return MOSQ_ERR_PLUGIN_DEFER;
	/* The filter is not logged: a hostile one could carry personal data into the log. */
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "citizeninfo_auth: refused a subscription by %s",
			user ? user : "(anonymous)");
	return MOSQ_ERR_ACL_DENIED;
}

static int on_reload(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)event_data;
	(void)userdata;
	int rc = load_rows();
	return rc ? rc : load_revoked();
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	plugin_id = identifier;
	for(int i = 0; i < option_count; i++){
		if(!strcmp(options[i].key, "acl_file")){
			policy.acl_path = strdup(options[i].value);
		}else if(!strcmp(options[i].key, "share_accounts")){
			size_t n = strlen(options[i].value) + 3;
			policy.share_accounts = malloc(n);
			if(policy.share_accounts) snprintf(policy.share_accounts, n, " %s ", options[i].value);
		}else if(!strcmp(options[i].key, "revoked_file")){
			policy.revoked_path = strdup(options[i].value);
		}else if(!strcmp(options[i].key, "revoked_retained")){
			policy.retained = strdup(options[i].value);
		}
	}
	if(!policy.acl_path){
		mosquitto_log_printf(MOSQ_LOG_ERR, "citizeninfo_auth: plugin_opt_acl_file is required");
		return MOSQ_ERR_INVAL;
	}
	int rc = load_rows();
	if(rc) return rc;
	rc = load_revoked();
	if(rc) return rc;
	rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	if(rc) return rc;
	rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	if(rc) return rc;
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_RELOAD, on_reload, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_RELOAD, on_reload, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	free_rows();
	free_names(policy.revoked, policy.revoked_count);
	free(policy.revoked_path);
	free(policy.retained);
	free(policy.acl_path);
	free(policy.share_accounts);
	return MOSQ_ERR_SUCCESS;
}
