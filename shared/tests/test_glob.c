/*
 * Unit tests: model globs.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "tx_snapshot.h"


static int
glob(const char *pat, const char *s)
{
    return tx_glob_match((const uint8_t *) pat, strlen(pat),
                         (const uint8_t *) s, strlen(s));
}


static int
list(const char *pats, const char *model)
{
    tx_str_t p;

    p.data = (const uint8_t *) pats;
    p.len = strlen(pats);

    return tx_glob_list_match(&p, (const uint8_t *) model, strlen(model));
}


static void
test_glob(void **state)
{
    assert_true(glob("*", ""));
    assert_true(glob("*", "gpt-4o"));
    assert_true(glob("gpt-4o*", "gpt-4o"));
    assert_true(glob("gpt-4o*", "gpt-4o-mini"));
    assert_false(glob("gpt-4o*", "gpt-4"));
    assert_false(glob("gpt-4o*", "xgpt-4o"));
    assert_true(glob("gpt-4o", "gpt-4o"));
    assert_false(glob("gpt-4o", "gpt-4o-mini"));
    assert_false(glob("gpt-4o", "GPT-4O"));
    assert_true(glob("*-mini", "gpt-4o-mini"));
    assert_false(glob("*-mini", "gpt-4o-mini-2024"));
    assert_true(glob("claude-*-sonnet*", "claude-3-5-sonnet-latest"));
    assert_false(glob("claude-*-sonnet*", "claude-3-opus"));
    assert_true(glob("a*b*c", "aXXbYYc"));
    assert_true(glob("a*b*c", "abc"));
    assert_true(glob("a*b*c", "abcbc"));
    assert_false(glob("a*b*c", "abcb"));
    assert_true(glob("**a**", "xxaxx"));
    assert_false(glob("", "x"));
    assert_true(glob("", ""));
    /* '?' and '[' are literal */
    assert_true(glob("gpt-?", "gpt-?"));
    assert_false(glob("gpt-?", "gpt-4"));
    assert_false(glob("[ab]", "a"));
    /* pathological backtracking stays cheap */
    assert_false(glob("*a*a*a*a*a*a*a*a*b",
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}


static void
test_list(void **state)
{
    tx_str_t empty;

    empty.data = (const uint8_t *) "";
    empty.len = 0;

    assert_false(tx_glob_list_match(&empty, (const uint8_t *) "gpt-4o", 6));
    assert_false(tx_glob_list_match(NULL, (const uint8_t *) "gpt-4o", 6));
    assert_true(list("*", "anything"));
    assert_true(list("gpt-4o*\nclaude-*", "claude-3-opus"));
    assert_true(list("gpt-4o*\nclaude-*", "gpt-4o-mini"));
    assert_false(list("gpt-4o*\nclaude-*", "o1-preview"));
    assert_false(list("gpt-4o\n", ""));
    assert_false(list("\n\n", ""));
    assert_true(list("\nmistral-large\n", "mistral-large"));
    assert_false(list("mistral-large", "mistral-larg"));
    assert_false(list("mistral-large", "mistral-large\n"));
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_list),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
