#ifndef CRDKAFKA_SHIM_H
#define CRDKAFKA_SHIM_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#ifdef __linux__
#include <sys/prctl.h>
#else
#include <pthread.h>
#endif

/*
 * Swift cannot call C variadic functions, so the few variadic librdkafka
 * entry points we need get fixed-arity wrappers here.
 *
 * rd_kafka_producev is used rather than rd_kafka_produceva: in 2.0.2 the
 * latter double-frees headers when the partition does not exist.
 * On success librdkafka owns `headers`; on failure the caller still does.
 */
static inline rd_kafka_resp_err_t
swift_rdk_produce(rd_kafka_t *rk,
                  rd_kafka_topic_t *rkt,
                  int32_t partition,
                  const void *value,
                  size_t value_len,
                  const void *key,
                  size_t key_len,
                  rd_kafka_headers_t *headers,
                  void *opaque) {
        if (headers) {
                return rd_kafka_producev(
                    rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_VALUE((void *)value, value_len),
                    RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_HEADERS(headers),
                    RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
        }
        return rd_kafka_producev(
            rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_VALUE((void *)value, value_len),
            RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_OPAQUE(opaque),
            RD_KAFKA_V_END);
}

/* One (error, rtt) pair pushed onto a single broker's error stack. */
static inline rd_kafka_resp_err_t
swift_rdk_mock_broker_push_request_error(rd_kafka_mock_cluster_t *mcluster,
                                         int32_t broker_id,
                                         int16_t api_key,
                                         rd_kafka_resp_err_t err,
                                         int rtt_ms) {
        return rd_kafka_mock_broker_push_request_error_rtts(
            mcluster, broker_id, api_key, 1, err, rtt_ms);
}

/*
 * The calling thread's name, as top -H, perf and debuggers show it (the
 * kernel keeps 15 bytes). Glibc's pthread_setname_np needs _GNU_SOURCE,
 * which Swift's Glibc module does not define.
 */
static inline void swift_set_thread_name(const char *name) {
#ifdef __linux__
        prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
#else
        pthread_setname_np(name);
#endif
}

/* `buffer` holds at least 16 bytes. */
static inline void swift_get_thread_name(char *buffer) {
#ifdef __linux__
        prctl(PR_GET_NAME, (unsigned long)buffer, 0, 0, 0);
#else
        pthread_getname_np(pthread_self(), buffer, 16);
#endif
        buffer[15] = 0;
}

#endif
