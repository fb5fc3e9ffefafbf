//! Channel permissions and presence of identified connections: `owner`, `group:NAME`
//! and `authenticated` rules, the JWT `channels` claim, the identity channels that
//! belong to their owner whatever the rules say, and presence by user (a user joins with
//! its first connection and leaves with its last, on one node, across Redis nodes, and
//! across a Redis Cluster).
//!
//! The tokens are minted by PyJWT (the test kit's `TokenKit`), an implementation
//! independent of the server's.

use heartwire_core::ErrorCode;
use heartwire_core::protocol::{ClientFrame, PresenceUser, ServerFrame};
use heartwire_server::{Access, ChannelRule, ServerConfig};
use heartwire_testkit::redis::{TestRedis, node, node_on};
use heartwire_testkit::redis_cluster::TestCluster;
use heartwire_testkit::tokens::{Spec, TokenKit};
use heartwire_testkit::{
    Socket, TestServer, ask_to_subscribe, connect, next_frame, send, subscribe,
};
use serde_json::json;

const SECRET: &str = "channel-rules-test-secret";

const RULES: &str = r#"
[[channels]]
pattern = "doc:{user}:*"
subscribe = "owner"
publish = "owner"

[[channels]]
pattern = "team:{group}"
subscribe = "owner"

[[channels]]
pattern = "staff:*"
subscribe = "group:staff"

[[channels]]
pattern = "room:*"
subscribe = "anyone"
publish = "authenticated"
presence = "authenticated"

[[channels]]
pattern = "*"
subscribe = "anyone"
publish = "anyone"
presence = "anyone"
"#;

fn rules(text: &str) -> Vec<ChannelRule> {
    #[derive(serde::Deserialize)]
    struct File {
        channels: Vec<ChannelRule>,
    }
    toml::from_str::<File>(text)
        .expect("the rules load")
        .channels
}

fn config(rules_text: &str) -> ServerConfig {
    ServerConfig {
        access: Access {
            jwt_secret: Some(SECRET.into()),
            allow_anonymous: Some(true),
            ..Access::default()
        },
        channels: rules(rules_text),
        presence: vec!["room:*".into()],
        ..ServerConfig::default()
    }
}

/// A token for each of `people` (user, groups, claimed channels), signed with
/// [`SECRET`] by PyJWT.
async fn tokens(people: &[(&str, &[&str], &[&str])]) -> Vec<String> {
    let specs: Vec<Spec> = people
        .iter()
        .map(|(user, groups, claimed)| {
            let claims = json!({"sub": user, "groups": groups, "channels": claimed});
            Spec::secret("HS256", SECRET, claims)
        })
        .collect();
    TokenKit::new().await.mint(&specs).await
}

/// Connects to `/ws` of `server` with `token`, the token of `user`, and reads the
/// hello; returns the socket and its session.
async fn connect_with(server: &TestServer, token: &str, user: &str) -> (Socket, String) {
    let mut socket = connect(&server.url(&format!("/ws?token={token}"))).await;
    match next_frame(&mut socket).await {
        ServerFrame::Hello {
            session,
            user: Some(named),
            ..
        } if named == user => (socket, session),
        other => panic!("expected the hello of {user}, got {other:?}"),
    }
}

/// Connects as `user` of `groups` (with `claimed` channels).
async fn connect_as(
    server: &TestServer,
    user: &str,
    groups: &[&str],
    claimed: &[&str],
) -> (Socket, String) {
    let token = tokens(&[(user, groups, claimed)]).await.remove(0);
    connect_with(server, &token, user).await
}

async fn try_subscribe(socket: &mut Socket, channel: &str) -> ServerFrame {
    ask_to_subscribe(socket, channel).await;
    next_frame(socket).await
}

fn is_forbidden(frame: &ServerFrame, channel: &str) -> bool {
    matches!(frame, ServerFrame::Error {
        code: ErrorCode::Forbidden,
        channel: Some(refused),
        ..
    } if refused == channel)
}

fn is_subscribed(frame: &ServerFrame, channel: &str) -> bool {
    matches!(frame, ServerFrame::Subscribed { channel: got, .. } if got == channel)
}

#[tokio::test]
async fn owner_lets_in_the_user_named_by_the_pattern_only() {
    let server = TestServer::start(config(RULES)).await;
    let (mut ada, _) = connect_as(&server, "ada", &[], &[]).await;
    assert!(is_subscribed(
        &try_subscribe(&mut ada, "doc:ada:1").await,
        "doc:ada:1"
    ));
    let frame = try_subscribe(&mut ada, "doc:bob:1").await;
    assert!(is_forbidden(&frame, "doc:bob:1"), "{frame:?}");
    send(
        &mut ada,
        &ClientFrame::Publish {
            channel: "doc:bob:1".into(),
            data: json!("edit"),
            id: Some("e-1".into()),
        },
    )
    .await;
    let frame = next_frame(&mut ada).await;
    assert!(is_forbidden(&frame, "doc:bob:1"), "{frame:?}");
}

#[tokio::test]
async fn owner_of_a_group_placeholder_is_any_member_of_that_group() {
    let server = TestServer::start(config(RULES)).await;
    let (mut sam, _) = connect_as(&server, "sam", &["ops", "staff"], &[]).await;
    assert!(is_subscribed(
        &try_subscribe(&mut sam, "team:staff").await,
        "team:staff"
    ));
    let frame = try_subscribe(&mut sam, "team:sales").await;
    assert!(is_forbidden(&frame, "team:sales"), "{frame:?}");
}

#[tokio::test]
async fn a_group_rule_lets_in_its_members_only() {
    let server = TestServer::start(config(RULES)).await;
    let (mut sam, _) = connect_as(&server, "sam", &["staff"], &[]).await;
    let (mut eve, _) = connect_as(&server, "eve", &["sales"], &[]).await;
    assert!(is_subscribed(
        &try_subscribe(&mut sam, "staff:news").await,
        "staff:news"
    ));
    let frame = try_subscribe(&mut eve, "staff:news").await;
    assert!(is_forbidden(&frame, "staff:news"), "{frame:?}");
}

#[tokio::test]
async fn authenticated_lets_an_identified_connection_publish() {
    let server = TestServer::start(config(RULES)).await;
    let (mut ada, _) = connect_as(&server, "ada", &[], &[]).await;
    subscribe(&mut ada, "room:1").await;
    send(
        &mut ada,
        &ClientFrame::Publish {
            channel: "room:1".into(),
            data: json!("hi"),
            id: Some("p-1".into()),
        },
    )
    .await;
    assert!(matches!(
        next_frame(&mut ada).await,
        ServerFrame::Message { seq: 1, .. }
    ));
    assert!(matches!(
        next_frame(&mut ada).await,
        ServerFrame::Ack { seq: 1, .. }
    ));
}

#[tokio::test]
async fn the_channels_claim_opens_what_no_rule_matches_for_its_holder() {
    let narrow = r#"
        [[channels]]
        pattern = "room:*"
        subscribe = "anyone"
    "#;
    let server = TestServer::start(config(narrow)).await;
    let (mut ada, _) = connect_as(&server, "ada", &[], &["draft:{user}", "doc:4711:*"]).await;
    let (mut bob, _) = connect_as(&server, "bob", &[], &[]).await;
    assert!(is_subscribed(
        &try_subscribe(&mut ada, "doc:4711:text").await,
        "doc:4711:text"
    ));
    assert!(is_subscribed(
        &try_subscribe(&mut ada, "draft:ada").await,
        "draft:ada"
    ));
    // Its placeholder is the holder's own: ada's claim is not bob's draft.
    let frame = try_subscribe(&mut ada, "draft:bob").await;
    assert!(is_forbidden(&frame, "draft:bob"), "{frame:?}");
    let frame = try_subscribe(&mut bob, "doc:4711:text").await;
    assert!(is_forbidden(&frame, "doc:4711:text"), "{frame:?}");
}

#[tokio::test]
async fn a_refresh_that_takes_a_permission_away_ends_its_subscriptions() {
    let rules = r#"
        [[channels]]
        pattern = "staff:*"
        subscribe = "group:staff"
        publish = "anyone"

        [[channels]]
        pattern = "lobby"
        subscribe = "anyone"
        publish = "anyone"
    "#;
    let server = TestServer::start(config(rules)).await;
    let [before, after] = <[String; 2]>::try_from(
        tokens(&[("sam", &["staff"], &["doc:1"]), ("sam", &[], &[])]).await,
    )
    .unwrap();
    let (mut sam, _) = connect_with(&server, &before, "sam").await;
    for channel in ["staff:news", "doc:1", "lobby"] {
        subscribe(&mut sam, channel).await;
    }
    send(&mut sam, &ClientFrame::Refresh { token: after }).await;
    assert!(matches!(
        next_frame(&mut sam).await,
        ServerFrame::Refreshed { .. }
    ));
    for lost in ["staff:news", "doc:1"] {
        let frame = next_frame(&mut sam).await;
        assert!(is_forbidden(&frame, lost), "{frame:?}");
        assert_eq!(
            next_frame(&mut sam).await,
            ServerFrame::Unsubscribed {
                channel: lost.into()
            }
        );
    }
    // What it still may read still comes, and only that.
    let (mut other, _) = connect_as(&server, "ada", &[], &[]).await;
    for channel in ["staff:news", "lobby"] {
        send(
            &mut other,
            &ClientFrame::Publish {
                channel: channel.into(),
                data: json!(channel),
                id: None,
            },
        )
        .await;
    }
    match next_frame(&mut sam).await {
        ServerFrame::Message { channel, .. } => assert_eq!(channel, "lobby"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn identity_channels_belong_to_their_owner_whatever_the_rules() {
    let wide_open = r#"
        [[channels]]
        pattern = "*"
        subscribe = "anyone"
        publish = "anyone"
    "#;
    let server = TestServer::start(config(wide_open)).await;
    let (mut eve, _) = connect_as(&server, "eve", &["sales"], &["*"]).await;
    for channel in ["user:ada:chat", "group:staff:chat", "session:0123abcd:chat"] {
        let frame = try_subscribe(&mut eve, channel).await;
        assert!(is_forbidden(&frame, channel), "{frame:?}");
    }
    assert!(is_subscribed(
        &try_subscribe(&mut eve, "user:eve:chat").await,
        "user:eve:chat"
    ));
    assert!(is_subscribed(
        &try_subscribe(&mut eve, "group:sales:chat").await,
        "group:sales:chat"
    ));
}

async fn presence_of(socket: &mut Socket, channel: &str) -> (Vec<String>, Vec<PresenceUser>) {
    send(
        socket,
        &ClientFrame::Presence {
            channel: channel.into(),
        },
    )
    .await;
    match next_frame(socket).await {
        ServerFrame::Presence { members, users, .. } => (members, users),
        other => panic!("expected presence, got {other:?}"),
    }
}

fn user(name: &str, connections: u32) -> PresenceUser {
    PresenceUser {
        user: name.into(),
        connections,
    }
}

/// `users` in the order of the presence list: by name.
fn by_name(mut users: Vec<PresenceUser>) -> Vec<PresenceUser> {
    users.sort_by(|a, b| a.user.cmp(&b.user));
    users
}

/// Ada's two connections and bob's, seen by wes, a watcher: the story is the same
/// whichever nodes they are on. `names` are the user names of wes, ada and bob.
/// Returns wes's connection, still subscribed.
async fn a_user_joins_with_its_first_connection_and_leaves_with_its_last(
    nodes: [&TestServer; 2],
    names: [&str; 3],
) -> Socket {
    let [wes_name, ada_name, bob_name] = names;
    let [wes, ada, bob] = <[String; 3]>::try_from(
        tokens(&[
            (wes_name, &[], &[]),
            (ada_name, &[], &[]),
            (bob_name, &[], &[]),
        ])
        .await,
    )
    .unwrap();
    let (mut watcher, watcher_session) = connect_with(nodes[0], &wes, wes_name).await;
    subscribe(&mut watcher, "room:1").await;
    let (mut ada_1, ada_1_session) = connect_with(nodes[0], &ada, ada_name).await;
    subscribe(&mut ada_1, "room:1").await;
    assert_eq!(
        next_frame(&mut watcher).await,
        ServerFrame::Join {
            channel: "room:1".into(),
            session: ada_1_session.clone(),
            user: Some(ada_name.into()),
        }
    );
    let (mut ada_2, ada_2_session) = connect_with(nodes[1], &ada, ada_name).await;
    subscribe(&mut ada_2, "room:1").await;
    let (mut bob, bob_session) = connect_with(nodes[1], &bob, bob_name).await;
    subscribe(&mut bob, "room:1").await;
    // Ada's second connection came unannounced: the next event is bob's.
    assert_eq!(
        next_frame(&mut watcher).await,
        ServerFrame::Join {
            channel: "room:1".into(),
            session: bob_session.clone(),
            user: Some(bob_name.into()),
        }
    );
    let (members, users) = presence_of(&mut watcher, "room:1").await;
    let mut sessions = vec![
        watcher_session,
        ada_1_session.clone(),
        ada_2_session.clone(),
        bob_session.clone(),
    ];
    sessions.sort();
    assert_eq!(members, sessions);
    assert_eq!(
        users,
        by_name(vec![
            user(ada_name, 2),
            user(bob_name, 1),
            user(wes_name, 1)
        ])
    );

    // Ada's connections leave, one by closing and one by unsubscribing, in an order
    // the server decides: only the last one's leave is told.
    drop(ada_1);
    send(
        &mut ada_2,
        &ClientFrame::Unsubscribe {
            channel: "room:1".into(),
        },
    )
    .await;
    match next_frame(&mut watcher).await {
        ServerFrame::Leave {
            channel,
            session,
            user: Some(user),
        } => {
            assert_eq!((channel.as_str(), user.as_str()), ("room:1", ada_name));
            assert!(
                [&ada_1_session, &ada_2_session].contains(&&session),
                "{session}"
            );
        }
        other => panic!("expected ada's leave, got {other:?}"),
    }
    let (_, users) = presence_of(&mut watcher, "room:1").await;
    assert_eq!(users, by_name(vec![user(bob_name, 1), user(wes_name, 1)]));
    // Nothing more of ada: the next event is bob's leave.
    drop(bob);
    assert_eq!(
        next_frame(&mut watcher).await,
        ServerFrame::Leave {
            channel: "room:1".into(),
            session: bob_session,
            user: Some(bob_name.into()),
        }
    );
    watcher
}

#[tokio::test]
async fn presence_by_user_with_the_in_process_broker() {
    let server = TestServer::start(config(RULES)).await;
    a_user_joins_with_its_first_connection_and_leaves_with_its_last(
        [&server, &server],
        ["wes", "ada", "bob"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_by_user_across_redis_nodes() {
    let redis = TestRedis::start();
    let a = node(&redis, config(RULES)).await;
    let b = node(&redis, config(RULES)).await;
    a_user_joins_with_its_first_connection_and_leaves_with_its_last(
        [&a, &b],
        ["wes", "ada", "bob"],
    )
    .await;
}

/// In a cluster the users' counts sit beside the members, under the channel's hash
/// tag, and names with spaces and braces (which Redis would take for a hash tag)
/// change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_by_user_across_a_redis_cluster_with_names_of_spaces_and_braces() {
    let cluster = tokio::task::block_in_place(TestCluster::start);
    let a = node_on(&cluster.config(), config(RULES)).await;
    let b = node_on(&cluster.config(), config(RULES)).await;
    let names = ["wes} {x", "ada {lovelace}", "bob smith"];
    let _wes =
        a_user_joins_with_its_first_connection_and_leaves_with_its_last([&a, &b], names).await;
    // Wes is still there: the only user counted, and the only member, on the master
    // of the channel's slot.
    tokio::task::block_in_place(|| {
        let owner = cluster.master_of("hw:{room:1}#users");
        assert_eq!(owner, cluster.master_of("hw:{room:1}#members"));
        let users = cluster.cli(owner, &["HGETALL", "hw:{room:1}#users"]);
        assert_eq!(users.lines().collect::<Vec<_>>(), [names[0], "1"]);
        let members = cluster.cli(owner, &["HVALS", "hw:{room:1}#members"]);
        let values: Vec<&str> = members.lines().collect();
        assert_eq!(values.len(), 1, "{values:?}");
        assert!(values[0].ends_with(&format!(" {}", names[0])), "{values:?}");
    });
}
