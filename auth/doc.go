// Package auth decides who may connect to the MQTT listeners and what each
// client may publish and subscribe to.
//
// Authentication: a client presents a username and password (checked
// against bcrypt hashes from a users file), or, on a TLS listener that asks
// for client certificates, a verified certificate whose common name can act
// as the username. Clients without a username are anonymous and connect only
// if anonymous access is on. A client-id pattern can restrict client ids.
//
// Authorization: an ordered list of rules; the first rule that matches the
// client (username and client-id patterns), the action (publish or
// subscribe) and the topic decides allow or deny; if none matches, the
// default decides. Rule filters may contain %u and %c, replaced by the
// client's username and client id, so one rule can give every device its own
// subtree ("devices/%c/#"). A publish is allowed when the rule's filter
// matches its topic; a subscription when every topic its filter can match is
// matched by the rule's filter. Joining a shared subscription
// $share/<group>/<filter> is checked on the filter and, if the rule names
// groups, on the group name.
package auth
