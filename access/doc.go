// Package access decides who may make the controller do what: the rights a prepared run needs
// (one SubjectAccessReview question per verb and object of each action), whether its requester
// has them (Reviewer, answers kept at most ten seconds), what no SubjectAccessReview can stand for
// (RBAC kinds, credential and shell subresources), and the controller's own objects, which no
// action may touch (Protected). The admission webhook and the controller ask the same questions.
package access
