package broadcast

import "testing"

func TestNotifyWakesEveryWaiterOnce(t *testing.T) {
	var s Signal
	a, b := s.Wait(), s.Wait()
	select {
	case <-a:
		t.Fatal("woken before any change")
	default:
	}
	s.Notify()
	<-a
	<-b
	c := s.Wait()
	select {
	case <-c:
		t.Fatal("a waiter after the change was woken by it")
	default:
	}
	s.Notify()
	<-c
}
