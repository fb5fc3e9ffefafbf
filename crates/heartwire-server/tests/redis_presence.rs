//! Presence: who is subscribed to a channel, with join and leave events, on one node
//! (in-process broker) and across nodes (Redis), and the expiry of a dead node's
//! members, counted by user.

use std::time::{Duration, Instant};

use heartwire_core::ErrorCode;
use heartwire_core::protocol::{ClientFrame, PresenceUser, ServerFrame};
use heartwire_server::{Access, ServerConfig};
use heartwire_testkit::redis::{IsolatedNode, TestRedis, node};
use heartwire_testkit::tokens::{Spec, TokenKit};
use heartwire_testkit::{Socket, TestServer, connect, connect_native, next_frame, send, subscribe};

fn presence_config() -> ServerConfig {
    ServerConfig {
        presence: vec!["room:*".into()],
        ..ServerConfig::default()
    }
}

async fn members(socket: &mut Socket, channel: &str) -> Vec<String> {
    send(
        socket,
        &ClientFrame::Presence {
            channel: channel.into(),
        },
    )
    .await;
    loop {
        match next_frame(socket).await {
            ServerFrame::Presence { members, .. } => return members,
            ServerFrame::Join { .. } | ServerFrame::Leave { .. } => continue,
            other => panic!("expected presence, got {other:?}"),
        }
    }
}

fn sorted(mut sessions: Vec<String>) -> Vec<String> {
    sessions.sort();
    sessions
}

/// Joins, lists, leaves: the same story told by whichever broker `nodes` share.
async fn members_join_list_and_leave(nodes: [&TestServer; 2]) {
    let (mut first, first_session) = connect_native(nodes[0]).await;
    subscribe(&mut first, "room:1").await;
    let (mut second, second_session) = connect_native(nodes[1]).await;
    subscribe(&mut second, "room:1").await;
    assert_eq!(
        next_frame(&mut first).await,
        ServerFrame::Join {
            channel: "room:1".into(),
            session: second_session.clone(),
            user: None,
        }
    );
    let expected = sorted(vec![first_session.clone(), second_session.clone()]);
    assert_eq!(members(&mut first, "room:1").await, expected);
    assert_eq!(members(&mut second, "room:1").await, expected);

    send(
        &mut second,
        &ClientFrame::Unsubscribe {
            channel: "room:1".into(),
        },
    )
    .await;
    assert_eq!(
        next_frame(&mut first).await,
        ServerFrame::Leave {
            channel: "room:1".into(),
            session: second_session.clone(),
            user: None,
        }
    );
    // A closed connection leaves too.
    let (mut third, third_session) = connect_native(nodes[1]).await;
    subscribe(&mut third, "room:1").await;
    assert!(
        matches!(next_frame(&mut first).await, ServerFrame::Join { session, .. } if session == third_session)
    );
    drop(third);
    assert_eq!(
        next_frame(&mut first).await,
        ServerFrame::Leave {
            channel: "room:1".into(),
            session: third_session,
            user: None,
        }
    );
    assert_eq!(members(&mut first, "room:1").await, vec![first_session]);

    // Channels outside the patterns are not tracked.
    send(
        &mut first,
        &ClientFrame::Presence {
            channel: "news".into(),
        },
    )
    .await;
    assert!(matches!(
        next_frame(&mut first).await,
        ServerFrame::Error {
            code: ErrorCode::PresenceOff,
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_on_one_node_with_the_in_process_broker() {
    let server = TestServer::start(presence_config()).await;
    members_join_list_and_leave([&server, &server]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_across_two_nodes_through_redis() {
    let redis = TestRedis::start();
    let a = node(&redis, presence_config()).await;
    let b = node(&redis, presence_config()).await;
    members_join_list_and_leave([&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_members_of_a_dead_node_leave_after_the_node_ttl() {
    let redis = TestRedis::start();
    let survivor = node(&redis, presence_config()).await;
    let mut doomed = IsolatedNode::start(&redis, presence_config()).await;
    let (mut watcher, watcher_session) = connect_native(&survivor).await;
    subscribe(&mut watcher, "room:9").await;
    let mut victim = connect(&doomed.url("/ws")).await;
    let ServerFrame::Hello {
        session: victim_session,
        ..
    } = next_frame(&mut victim).await
    else {
        panic!("expected hello")
    };
    subscribe(&mut victim, "room:9").await;
    assert!(
        matches!(next_frame(&mut watcher).await, ServerFrame::Join { session, .. } if session == victim_session)
    );

    let killed = Instant::now();
    doomed.kill();
    assert_eq!(
        next_frame(&mut watcher).await,
        ServerFrame::Leave {
            channel: "room:9".into(),
            session: victim_session,
            user: None,
        }
    );
    let took = killed.elapsed();
    // The node's key lives 5 s after its last refresh (at most 1 s before the kill),
    // then the survivor's next sweep (1 s apart) removes it; slack on top.
    let bound = Duration::from_secs(5 + 1 + 2);
    println!("dead node's member left after {took:?} (bound {bound:?})");
    assert!(took <= bound, "leave after {took:?}");
    assert!(
        took >= Duration::from_secs(3),
        "a leave this early was not the expiry: {took:?}"
    );
    assert_eq!(members(&mut watcher, "room:9").await, vec![watcher_session]);
}

/// Connects to `url` (a node's `/ws`) with `token` and reads the hello; returns the
/// socket and its session.
async fn connect_with(url: String, token: &str) -> (Socket, String) {
    let mut socket = connect(&format!("{url}?token={token}")).await;
    match next_frame(&mut socket).await {
        ServerFrame::Hello { session, .. } => (socket, session),
        other => panic!("expected hello, got {other:?}"),
    }
}

/// A dead node's members are removed as any member is: a user with a connection
/// left on a live node stays, one whose connections were all on the dead node
/// leaves, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_users_leave_only_with_their_last_connection() {
    const SECRET: &str = "dead-node-users-secret";
    let config = || ServerConfig {
        access: Access {
            jwt_secret: Some(SECRET.into()),
            allow_anonymous: Some(true),
            ..Access::default()
        },
        ..presence_config()
    };
    let redis = TestRedis::start();
    let survivor = node(&redis, config()).await;
    let mut doomed = IsolatedNode::start(&redis, config()).await;
    let specs = ["ada lovelace", "bob", "carol"]
        .map(|user| Spec::secret("HS256", SECRET, serde_json::json!({ "sub": user })));
    let [ada, bob, carol] =
        <[String; 3]>::try_from(TokenKit::new().await.mint(&specs).await).unwrap();
    let (mut watcher, watcher_session) = connect_native(&survivor).await;
    subscribe(&mut watcher, "room:9").await;
    let (mut ada_1, ada_1_session) = connect_with(survivor.url("/ws"), &ada).await;
    subscribe(&mut ada_1, "room:9").await;
    assert!(matches!(
        next_frame(&mut watcher).await,
        ServerFrame::Join { session, user: Some(user), .. }
            if session == ada_1_session && user == "ada lovelace"
    ));
    let (mut ada_2, _) = connect_with(doomed.url("/ws"), &ada).await;
    subscribe(&mut ada_2, "room:9").await;
    let (mut bob, bob_session) = connect_with(doomed.url("/ws"), &bob).await;
    subscribe(&mut bob, "room:9").await;
    // Ada's second connection came unannounced: the next event is bob's.
    assert!(matches!(
        next_frame(&mut watcher).await,
        ServerFrame::Join { session, .. } if session == bob_session
    ));

    doomed.kill();
    assert_eq!(
        next_frame(&mut watcher).await,
        ServerFrame::Leave {
            channel: "room:9".into(),
            session: bob_session,
            user: Some("bob".into()),
        }
    );
    // Ada's connection on the dead node is gone, uncounted, and no leave of hers
    // came before the list (the sweep that removed it answers the list).
    send(
        &mut watcher,
        &ClientFrame::Presence {
            channel: "room:9".into(),
        },
    )
    .await;
    match next_frame(&mut watcher).await {
        ServerFrame::Presence { members, users, .. } => {
            assert_eq!(members, sorted(vec![watcher_session, ada_1_session]));
            assert_eq!(
                users,
                [PresenceUser {
                    user: "ada lovelace".into(),
                    connections: 1,
                }]
            );
        }
        other => panic!("expected presence, got {other:?}"),
    }
    // Nor after it: the next event is carol's join.
    let (mut carol, carol_session) = connect_with(survivor.url("/ws"), &carol).await;
    subscribe(&mut carol, "room:9").await;
    assert!(matches!(
        next_frame(&mut watcher).await,
        ServerFrame::Join { session, .. } if session == carol_session
    ));
}
